"""The proximity graph: each instance linked to its most similar instances among random candidates.

For every node, ``m`` candidates are drawn uniformly without replacement (never the node itself)
and the ``k`` most cosine-similar of them become its out-neighbours (Yang et al., KDD 2023).
``m`` trades hardness against false negatives: ``m = k`` gives random neighbours, ``m >= N - 1``
the exact kNN graph.

Construction is dense matrix work: a block of anchors shares one draw of candidates, so scoring a
block is one GEMM followed by a top-k. Candidate draws are stratified (consecutive slices of
random permutations of all nodes), so every node is offered as a candidate to about ``m``
anchors, as with independent per-anchor draws, while memory stays ``O(block_size * m)``.
The exact graph uses a FAISS flat inner-product index.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ._threads import limit_threads
from ._validation import check_int, to_numpy_2d

__all__ = ["ProximityGraph"]

logger = logging.getLogger(__name__)

_FORMAT_VERSION = 1


class ProximityGraph:
    r"""A directed graph over ``num_nodes`` instances stored in CSR form.

    Out-neighbours of node ``i`` are ``indices[indptr[i]:indptr[i + 1]]``. A graph from
    :meth:`build` is *regular*: every node has exactly ``k`` out-neighbours, available as the
    ``[N, k]`` array :attr:`neighbors` (a view, no copy). :meth:`symmetrize` makes degrees vary.

    Args:
        indptr: int64 array ``[N + 1]``, non-decreasing, starting at 0.
        indices: int32 array ``[E]`` of neighbour ids in ``[0, N)``.
        scores: optional float32 array ``[E]`` of cosine similarities aligned with ``indices``
            (NaN for edges that were not scored, e.g. random edges of masked rows).
        build_params: free-form metadata saved with the graph (``k``, ``m``, ``seed``, ...).

    Raises:
        ValueError: if the arrays are inconsistent.
    """

    def __init__(
        self,
        indptr: np.ndarray,
        indices: np.ndarray,
        scores: np.ndarray | None = None,
        *,
        build_params: dict[str, Any] | None = None,
    ) -> None:
        indptr = np.asarray(indptr)
        indices = np.asarray(indices)
        if indptr.ndim != 1 or indptr.size < 2 or not np.issubdtype(indptr.dtype, np.integer):
            raise ValueError(f"indptr must be a 1-D integer array of length N + 1 >= 2, got {indptr.shape}")
        if indptr[0] != 0 or np.any(np.diff(indptr) < 0) or indptr[-1] != indices.size:
            raise ValueError("indptr must start at 0, be non-decreasing and end at len(indices)")
        if indices.ndim != 1 or (indices.size and not np.issubdtype(indices.dtype, np.integer)):
            raise ValueError(f"indices must be a 1-D integer array, got {indices.dtype} {indices.shape}")
        num_nodes = indptr.size - 1
        if indices.size and (indices.min() < 0 or indices.max() >= num_nodes):
            raise ValueError(f"indices must lie in [0, {num_nodes})")
        if scores is not None:
            scores = np.asarray(scores, dtype=np.float32)
            if scores.shape != indices.shape:
                raise ValueError(f"scores must have shape {indices.shape}, got {scores.shape}")
        self.indptr = indptr.astype(np.int64, copy=False)
        self.indices = indices.astype(np.int32, copy=False)
        self.scores = scores
        self.build_params = dict(build_params or {})

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_neighbors(
        cls, neighbors: np.ndarray, scores: np.ndarray | None = None, **kwargs: Any
    ) -> ProximityGraph:
        """A regular graph from an ``[N, k]`` neighbour array (and optional ``[N, k]`` scores)."""
        neighbors = np.asarray(neighbors)
        if neighbors.ndim != 2:
            raise ValueError(f"neighbors must be 2-D [N, k], got shape {neighbors.shape}")
        num_nodes, k = neighbors.shape
        indptr = np.arange(num_nodes + 1, dtype=np.int64) * k
        flat_scores = None if scores is None else np.asarray(scores).reshape(-1)
        return cls(indptr, neighbors.reshape(-1), flat_scores, **kwargs)

    @classmethod
    def build(
        cls,
        embeddings: Any,
        k: int = 100,
        m: int = 1000,
        *,
        seed: int | np.random.SeedSequence = 0,
        mask: np.ndarray | None = None,
        symmetrize: bool = False,
        block_size: int = 256,
        keep_scores: bool = True,
        num_threads: int | None = None,
        show_progress: bool = False,
    ) -> ProximityGraph:
        r"""Build the graph: for every node, the ``k`` most cosine-similar of ``m`` random candidates.

        Args:
            embeddings: ``[N, d]`` float array or tensor (any device); rows are L2-normalised
                here, so scale does not matter. All-zero rows have similarity 0 to everything.
            k: out-degree, ``1 <= k < N`` (``k`` below the number of rows ``mask`` keeps).
            m: candidates per node, ``m >= k``. ``m >= N - 1`` gives the exact kNN graph.
            seed: seed of the candidate draws (an int or a :class:`numpy.random.SeedSequence`).
            mask: optional bool ``[N]``; rows where it is False hold no usable embedding (e.g.
                never seen in training). They are never candidates of other nodes and receive
                ``k`` uniformly random out-neighbours (scores NaN), so walks pass through them.
            symmetrize: add the reverse of every edge (degrees then vary, see :meth:`symmetrize`).
            block_size: anchors that share one candidate draw. Larger is faster (bigger GEMMs);
                it is capped at ``m + 1`` so every node is drawn as a candidate at least once.
            keep_scores: keep the ``[E]`` float32 similarity of every edge.
            num_threads: threads for FAISS and torch during the build (``None``: unchanged).
            show_progress: show a tqdm progress bar.

        Returns:
            The graph, with ``build_params`` recording ``k``, ``m``, ``exact`` and the seed.

        Raises:
            ValueError: on non-2-D, empty or non-finite embeddings, ``k < 1``, ``k >= N``,
                ``m < k``, a mask of the wrong shape, or a mask keeping ``k`` rows or fewer.
            TypeError: on non-integer ``k``, ``m``, ``block_size``.
        """
        x = to_numpy_2d("embeddings", embeddings)
        num_nodes = x.shape[0]
        k = check_int("k", k, low=1)
        m = check_int("m", m, low=1)
        block_size = check_int("block_size", block_size, low=1)
        if num_threads is not None:
            num_threads = check_int("num_threads", num_threads, low=1)
        if k >= num_nodes:
            raise ValueError(f"k must be < the number of instances ({num_nodes}), got k={k}")
        if m < k:
            raise ValueError(f"m must be >= k, got m={m} < k={k}")
        valid_rows = None
        if mask is not None:
            mask = np.asarray(mask)
            if mask.dtype != np.bool_ or mask.shape != (num_nodes,):
                raise ValueError(f"mask must be a bool array of shape ({num_nodes},), got {mask.dtype} {mask.shape}")
            if not mask.all():
                valid_rows = np.flatnonzero(mask)
                if valid_rows.size <= k:
                    raise ValueError(f"mask must keep more than k={k} rows, keeps {valid_rows.size}")
                x = x[valid_rows]

        rng = np.random.default_rng(seed)
        x = _normalize_rows(x)
        n = x.shape[0]
        exact = m >= n - 1
        with limit_threads(num_threads):
            if exact:
                neighbors, scores = _exact_knn(x, k, show_progress)
            else:
                neighbors, scores = _random_candidate_knn(
                    x, k, m, rng, min(block_size, m + 1), show_progress
                )
        if valid_rows is not None:
            neighbors, scores = _embed_masked_rows(neighbors, scores, valid_rows, num_nodes, rng)
        params = {"k": k, "m": m, "exact": exact, "seed": _seed_repr(seed), "symmetrized": False}
        graph = cls.from_neighbors(
            neighbors, scores if keep_scores else None, build_params=params
        )
        return graph.symmetrize() if symmetrize else graph

    def symmetrize(self) -> ProximityGraph:
        """A new graph with every edge also reversed (duplicates merged, max score kept)."""
        n = self.num_nodes
        rows = np.repeat(np.arange(n, dtype=np.int64), self.degrees)
        cols = self.indices.astype(np.int64)
        src = np.concatenate([rows, cols])
        dst = np.concatenate([cols, rows])
        score = None
        if self.scores is not None:
            score = np.concatenate([self.scores, self.scores])
            # Sorting by (-score) first makes np.unique keep the highest-scored duplicate.
            order = np.lexsort((-np.nan_to_num(score, nan=-np.inf), dst, src))
        else:
            order = np.lexsort((dst, src))
        keys = src[order] * n + dst[order]
        _, first = np.unique(keys, return_index=True)
        keep = order[first]
        src, dst = src[keep], dst[keep]
        indptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.bincount(src, minlength=n), out=indptr[1:])
        params = dict(self.build_params, symmetrized=True)
        return ProximityGraph(
            indptr, dst.astype(np.int32), None if score is None else score[keep], build_params=params
        )

    # ------------------------------------------------------------------ properties

    @property
    def num_nodes(self) -> int:
        """Number of nodes ``N``."""
        return self.indptr.size - 1

    @property
    def num_edges(self) -> int:
        """Number of directed edges ``E``."""
        return int(self.indices.size)

    @property
    def degrees(self) -> np.ndarray:
        """Out-degree of every node, int64 ``[N]``."""
        return np.diff(self.indptr)

    def in_degrees(self) -> np.ndarray:
        """In-degree of every node, int64 ``[N]`` (how often it is someone's neighbour)."""
        return np.bincount(self.indices, minlength=self.num_nodes)

    @property
    def is_regular(self) -> bool:
        """True when every node has the same out-degree."""
        degrees = self.degrees
        return bool(degrees.size == 0 or (degrees == degrees[0]).all())

    @property
    def neighbors(self) -> np.ndarray:
        """int32 ``[N, k]`` out-neighbours, sorted by decreasing similarity.

        Raises:
            ValueError: if the graph is not regular (e.g. after :meth:`symmetrize`).
        """
        if not self.is_regular:
            raise ValueError("neighbors is only defined for regular graphs; use indptr/indices")
        return self.indices.reshape(self.num_nodes, -1)

    def __repr__(self) -> str:
        return f"ProximityGraph(num_nodes={self.num_nodes}, num_edges={self.num_edges}, params={self.build_params})"

    # ------------------------------------------------------------------ persistence

    def save(self, path: str | os.PathLike) -> None:
        """Save to an uncompressed ``.npz`` file (NumPy appends ``.npz`` if missing)."""
        arrays = {"indptr": self.indptr, "indices": self.indices}
        if self.scores is not None:
            arrays["scores"] = self.scores
        meta = np.array(repr({"format_version": _FORMAT_VERSION, **self.build_params}))
        np.savez(path, meta=meta, **arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> ProximityGraph:
        """Load a graph written by :meth:`save`.

        Raises:
            ValueError: if the file is not a proximity graph of a known format version.
        """
        import ast

        with np.load(path, allow_pickle=False) as data:
            if "indptr" not in data or "meta" not in data:
                raise ValueError(f"{os.fspath(path)!r} is not a saved ProximityGraph")
            meta = ast.literal_eval(str(data["meta"]))
            version = meta.pop("format_version", None)
            if version != _FORMAT_VERSION:
                raise ValueError(f"unsupported graph format version {version!r} in {os.fspath(path)!r}")
            scores = data["scores"] if "scores" in data else None
            return cls(data["indptr"], data["indices"], scores, build_params=meta)

    # ------------------------------------------------------------------ export

    def to_scipy(self, weighted: bool = True):
        """The adjacency as a ``scipy.sparse.csr_array`` ``[N, N]`` (row = source).

        With ``weighted`` and stored scores the entries are the similarities, else ones.
        """
        from scipy import sparse

        if weighted and self.scores is not None:
            data = self.scores
        else:
            data = np.ones(self.num_edges, dtype=np.float32)
        return sparse.csr_array((data, self.indices, self.indptr), shape=(self.num_nodes,) * 2)

    def to_networkx(self):
        """A ``networkx.DiGraph`` with a ``weight`` edge attribute (requires networkx)."""
        try:
            import networkx as nx
        except ImportError as error:  # pragma: no cover - depends on the environment
            raise ImportError("to_networkx() needs networkx: pip install networkx") from error
        return nx.from_scipy_sparse_array(self.to_scipy(), create_using=nx.DiGraph)

    def to_pyg(self) -> torch.Tensor:
        """PyG ``edge_index``: int64 tensor ``[2, E]``, row 0 the node, row 1 its neighbour.

        Edges are in CSR order, so ``torch.from_numpy(graph.scores)`` is the aligned edge weight.
        """
        rows = np.repeat(np.arange(self.num_nodes, dtype=np.int64), self.degrees)
        return torch.from_numpy(np.stack([rows, self.indices.astype(np.int64)]))


# ---------------------------------------------------------------------- helpers


def _normalize_rows(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    # Zero rows stay zero (similarity 0 to everything) instead of becoming NaN.
    return x / np.maximum(norms, np.finfo(np.float32).tiny)


def _seed_repr(seed: Any) -> Any:
    if isinstance(seed, np.random.SeedSequence):
        return {"entropy": seed.entropy, "spawn_key": tuple(seed.spawn_key)}
    return seed


def _exact_knn(x: np.ndarray, k: int, show_progress: bool) -> tuple[np.ndarray, np.ndarray]:
    """Exact cosine kNN excluding self, via a FAISS flat inner-product index."""
    import faiss

    n, dim = x.shape
    index = faiss.IndexFlatIP(dim)
    index.add(x)
    neighbors = np.empty((n, k), dtype=np.int64)
    scores = np.empty((n, k), dtype=np.float32)
    step = 4096
    for start in tqdm(range(0, n, step), desc="exact kNN", unit="block", disable=not show_progress):
        stop = min(n, start + step)
        sims, ids = index.search(x[start:stop], k + 1)
        # Self is removed by id, not by rank: with duplicate embeddings it may not rank first.
        is_self = ids == np.arange(start, stop)[:, None]
        keep = ~is_self
        keep[~is_self.any(axis=1), k] = False
        neighbors[start:stop] = ids[keep].reshape(-1, k)
        scores[start:stop] = sims[keep].reshape(-1, k)
    return neighbors, scores


class _CandidateStream:
    """Distinct candidate sets cut from consecutive random permutations of ``range(n)``.

    Every node appears once per pass, so each is offered to anchors equally often instead of
    a Poisson-distributed number of times (which leaves nodes never drawn at all).
    """

    def __init__(self, n: int, rng: np.random.Generator) -> None:
        self._n = n
        self._rng = rng
        self._perm = rng.permutation(n)
        self._pos = 0

    def take(self, count: int) -> np.ndarray:
        rest = self._perm[self._pos : self._pos + count]
        self._pos += rest.size
        if rest.size == count:
            return rest
        # Pass boundary: complete from a fresh permutation, skipping ids already taken.
        fresh = self._rng.permutation(self._n)
        fresh = fresh[~np.isin(fresh, rest)]
        need = count - rest.size
        self._perm, self._pos = fresh, need
        return np.concatenate([rest, fresh[:need]])


def _random_candidate_knn(
    x: np.ndarray, k: int, m: int, rng: np.random.Generator, block_size: int, show_progress: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k among m random candidates per node; anchors of a block share one candidate draw."""
    n = x.shape[0]
    xt = torch.from_numpy(x)
    anchors_order = rng.permutation(n)
    stream = _CandidateStream(n, rng)
    neighbors = np.empty((n, k), dtype=np.int64)
    scores = np.empty((n, k), dtype=np.float32)
    blocks = range(0, n, block_size)
    for start in tqdm(blocks, desc="proximity graph", unit="block", disable=not show_progress):
        anchors = anchors_order[start : start + block_size]
        # m + 1 candidates: an anchor among them masks itself, any other masks one at random,
        # so every anchor scores a uniform draw of exactly m candidates that are not itself.
        candidates = stream.take(m + 1)
        sims = xt[anchors] @ xt[candidates].T
        sort = np.argsort(candidates)
        found = np.minimum(np.searchsorted(candidates[sort], anchors), m)
        is_candidate = candidates[sort[found]] == anchors
        position = np.where(is_candidate, sort[found], rng.integers(m + 1, size=anchors.size))
        sims[torch.arange(anchors.size), torch.from_numpy(position)] = -torch.inf
        top_sims, top_pos = torch.topk(sims, k, dim=1)
        neighbors[anchors] = candidates[top_pos.numpy()]
        scores[anchors] = top_sims.numpy()
    return neighbors, scores


def _embed_masked_rows(
    neighbors: np.ndarray,
    scores: np.ndarray,
    valid_rows: np.ndarray,
    num_nodes: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Map a graph over ``valid_rows`` back to all nodes; masked rows get random edges."""
    k = neighbors.shape[1]
    full_neighbors = np.empty((num_nodes, k), dtype=np.int64)
    full_scores = np.full((num_nodes, k), np.nan, dtype=np.float32)
    full_neighbors[valid_rows] = valid_rows[neighbors]
    full_scores[valid_rows] = scores
    masked = np.setdiff1d(np.arange(num_nodes), valid_rows)
    full_neighbors[masked] = random_distinct_neighbors(rng, masked, k, num_nodes)
    return full_neighbors, full_scores


def random_distinct_neighbors(
    rng: np.random.Generator, rows: np.ndarray, k: int, num_nodes: int
) -> np.ndarray:
    """``[len(rows), k]`` uniformly random distinct ids in ``[0, num_nodes)``, never the row itself."""
    out = np.empty((rows.size, k), dtype=np.int64)
    for i, row in enumerate(rows.tolist()):
        draw = rng.choice(num_nodes - 1, size=k, replace=False)
        out[i] = draw + (draw >= row)  # shift past the row itself
    return out
