"""The proximity graph: each instance linked to its most similar instances among random candidates.

For every node, ``m`` candidates are drawn uniformly without replacement (never the node itself)
and the ``k`` most cosine-similar of them become its out-neighbours (Yang et al., KDD 2023).
``m`` trades hardness against false negatives: ``m = k`` gives random neighbours, ``m >= N - 1``
the exact kNN graph.

Construction is dense matrix work: a block of anchors shares one draw of candidates, so scoring a
block is one GEMM followed by a compiled top-k selection; blocks run in parallel threads.
Candidate draws are stratified (consecutive slices of random permutations of all nodes), so every
node is offered as a candidate to about ``m`` anchors, as with independent per-anchor draws,
while memory stays ``O(block_size * m)``. Other backends: ``"exact"`` (blocked all-pairs GEMM),
``"hnsw"`` and ``"ivf"`` (FAISS approximate kNN). :func:`build_neighbor_rows` computes one
shard's rows for distributed jobs.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ._build import BACKENDS, build_rows, random_distinct_neighbors
from ._checkpoint import json_dumps
from ._io import load_npz, npz_path, save_npz

__all__ = ["BACKENDS", "ProximityGraph", "build_neighbor_rows", "random_distinct_neighbors"]

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
        block_size: int | None = None,
        keep_scores: bool = True,
        num_threads: int | None = None,
        show_progress: bool = False,
        backend: str = "random",
        index_params: dict[str, Any] | None = None,
        device: str | torch.device | None = None,
        precision: str = "float32",
    ) -> ProximityGraph:
        r"""Build the graph: for every node, the ``k`` most cosine-similar of ``m`` random candidates.

        Args:
            embeddings: ``[N, d]`` float array or tensor (any device); cosine similarity is
                used, so scale does not matter. All-zero rows have similarity 0 to everything.
            k: out-degree, ``1 <= k < N`` (``k`` below the number of rows ``mask`` keeps).
            m: candidates per node, ``m >= k``. ``m >= N - 1`` gives the exact kNN graph.
            seed: seed of the candidate draws (an int or a :class:`numpy.random.SeedSequence`).
            mask: optional bool ``[N]``; rows where it is False hold no usable embedding (e.g.
                never seen in training). They are never candidates of other nodes and receive
                ``k`` uniformly random out-neighbours (scores NaN), so walks pass through them.
            symmetrize: add the reverse of every edge (degrees then vary, see :meth:`symmetrize`).
            block_size: anchors that share one candidate draw (``None``: ``m + 1``, fewer for
                very large ``m``). Capped at ``m + 1`` so every node is drawn as a candidate
                at least once; any value gives the same distribution of each node's candidates.
            keep_scores: keep the ``[E]`` float32 similarity of every edge.
            num_threads: threads for the build (its worker threads, FAISS, torch; ``None``:
                as many workers as usable cores, FAISS and torch left as they are).
            show_progress: show a tqdm progress bar.
            backend: ``"random"`` (the paper's graph; ``"exact"`` when ``m >= N - 1``),
                ``"exact"`` (true kNN by blocked all-pairs products, ``O(N^2 d)``), or the
                approximate true kNN of FAISS ``"hnsw"`` / ``"ivf"`` indexes (``m`` ignored).
            index_params: FAISS settings for ``"hnsw"`` (``M``, ``ef_construction``,
                ``ef_search``) or ``"ivf"`` (``nlist``, ``nprobe``). With a CUDA ``device``,
                ``"exact"`` takes ``{"faiss_gpu": None | bool}``: ``None`` (default) uses
                FAISS's GPU kNN when FAISS's GPU build is installed (``pip install
                'batchsampler[gpu]'``) and ``k < 2048``, else the torch path; ``True``
                requires it; ``False`` keeps torch.
            device: ``None`` (default): the NumPy build on the CPU. A torch device (``"cpu"``,
                ``"cuda"``, ``"cuda:1"``, a :class:`torch.device`): the build runs in torch on
                that device (a tensor already there is used without a host round trip) and
                only the ``[N, k]`` int32 neighbours and float32 scores come back to the CPU.
                The random backend uses the same candidate plan as the NumPy build (same
                seed, same candidates), blocked GEMMs and ``torch.topk``; ``"exact"`` a
                blocked all-pairs GEMM with a running top-``k``. Both give the NumPy graph
                up to float rounding ties. ``"hnsw"`` always builds its FAISS index on the
                CPU (FAISS has no GPU HNSW); ``"ivf"`` uses a FAISS GPU index when FAISS's
                GPU build sees a GPU, else the CPU. Masked rows get their random edges on
                the CPU, as without a device.
            precision: GEMM precision with a ``device``: ``"float32"`` (default; on CUDA it
                follows ``torch.backends.cuda.matmul.allow_tf32``), ``"bfloat16"`` or
                ``"float16"`` (faster on GPUs; scores rounded to that type, so near-ties may
                differ from float32). ``device=None`` computes in float32 only.

        Returns:
            The graph, with ``build_params`` recording ``k``, ``m``, ``exact``, ``backend``
            and the seed (and ``device``, the device type, and ``precision`` with a device).

        Raises:
            ValueError: on non-2-D, empty or non-finite embeddings, ``k < 1``, ``k >= N``,
                ``m < k``, a mask of the wrong shape, a mask keeping ``k`` rows or fewer, an
                unknown backend or precision, low precision without a device, or a device
                that is unknown or not available (CUDA without a GPU).
            TypeError: on non-integer ``k``, ``m``, ``block_size``, or a ``device`` that is
                neither a string nor a ``torch.device``.
            RuntimeError: inside a DataLoader worker process (FAISS/OpenMP hang after fork).
        """
        built = build_rows(
            embeddings, k, m, seed=seed, mask=mask, backend=backend, block_size=block_size,
            index_params=index_params, num_threads=num_threads, shard=(0, 1),
            keep_scores=keep_scores, show_progress=show_progress, device=device, precision=precision,
        )
        neighbors, scores = built.neighbors, built.scores
        if built.rows is not None:  # rows came in another order (mask): put them in node order
            neighbors = np.empty_like(neighbors)
            neighbors[built.rows] = built.neighbors
            if scores is not None:
                scores = np.empty_like(scores)
                scores[built.rows] = built.scores
        params = {**built.params, "seed": _seed_repr(seed), "symmetrized": False}
        graph = cls.from_neighbors(neighbors, scores, build_params=params)
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

    @functools.cached_property
    def is_regular(self) -> bool:
        """True when every node has the same out-degree (computed once: graphs are immutable)."""
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
        return (f"ProximityGraph(num_nodes={self.num_nodes}, num_edges={self.num_edges}, "
                f"params={_abridged(self.build_params)})")

    # ------------------------------------------------------------------ persistence

    def save(self, path: str | os.PathLike) -> str:
        """Save to an uncompressed ``.npz`` file, atomically (temporary file, fsync, rename).

        ``.npz`` is appended unless ``path`` ends so; :meth:`load` resolves names the same way.
        ``build_params`` are stored as JSON (NumPy scalars become Python numbers).

        Returns:
            The path written.

        Raises:
            TypeError: if ``build_params`` hold values JSON cannot store.
        """
        arrays = {"indptr": self.indptr, "indices": self.indices}
        if self.scores is not None:
            arrays["scores"] = self.scores
        meta = np.array(json_dumps({"format_version": _FORMAT_VERSION, **self.build_params}))
        return save_npz(path, meta=meta, **arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> ProximityGraph:
        """Load a graph written by :meth:`save`.

        Raises:
            FileNotFoundError: if there is no such file.
            ValueError: if the file is empty, truncated, not an ``.npz``, a sampler checkpoint,
                or a graph of an unknown format version or with inconsistent arrays.
        """
        data = load_npz(path, "a saved ProximityGraph")
        where = repr(npz_path(path))
        if "indptr" not in data or "indices" not in data or "meta" not in data:
            kind = "a sampler checkpoint" if "bank_seen" in data else "not a saved ProximityGraph"
            raise ValueError(f"{where} is {kind}, expected a graph written by ProximityGraph.save")
        meta = _read_meta(str(data["meta"]), where)
        version = meta.pop("format_version", None)
        if version != _FORMAT_VERSION:
            raise ValueError(f"unsupported graph format version {version!r} in {where}")
        try:
            return cls(data["indptr"], data["indices"], data.get("scores"), build_params=meta)
        except ValueError as error:
            raise ValueError(f"{where} holds an invalid graph: {error}") from error

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


# ---------------------------------------------------------------------- sharded construction


def build_neighbor_rows(
    embeddings: Any,
    k: int = 100,
    m: int = 1000,
    *,
    seed: int | np.random.SeedSequence = 0,
    shard: Sequence[int] = (0, 1),
    mask: np.ndarray | None = None,
    backend: str = "random",
    block_size: int | None = None,
    index_params: dict[str, Any] | None = None,
    num_threads: int | None = None,
    show_progress: bool = False,
    device: str | torch.device | None = None,
    precision: str = "float32",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Compute one shard's rows of :meth:`ProximityGraph.build` (for distributed jobs).

    Rows are cut into blocks (anchor blocks of the random backend, tiles of 2048 rows
    otherwise); shard ``(rank, world_size)`` computes blocks ``i`` with
    ``i % world_size == rank``, and masked rows ``p`` (position in the sorted list of masked
    nodes) with ``p % world_size == rank``. Every shard draws the same random plan (a few
    permutations of ``range(N)``), so for the random backend the union of all shards' rows
    with the same seed and arguments is bit-identical to ``ProximityGraph.build`` (same
    number of threads or not). For ``"exact"`` a shard compares its rows with all columns
    (identical up to float rounding ties); ``"hnsw"``/``"ivf"`` build the whole index on
    every shard and search only the shard's rows.

    Args:
        embeddings: ``[N, d]`` array or tensor, identical on every shard.
        k, m, seed, mask, backend, block_size, index_params, num_threads, show_progress,
            device, precision: as in :meth:`ProximityGraph.build` (each rank may use its own
            device: ``"cuda:0"`` on one, ``"cuda:1"`` on another).
        shard: ``(rank, world_size)``, ``0 <= rank < world_size``.

    Returns:
        ``(rows, neighbors, scores)``: int64 ``[R]`` node ids of the shard's rows, int64
        ``[R, k]`` their out-neighbours by decreasing similarity, float32 ``[R, k]`` cosine
        similarities (NaN for the random edges of masked rows). Gather them on every rank
        and scatter ``neighbors[rows]`` into an ``[N, k]`` array to get the full graph
        (:meth:`ProximityGraph.from_neighbors`).

    Raises:
        ValueError, TypeError, RuntimeError: as :meth:`ProximityGraph.build`, and on a bad
            ``shard``.
    """
    built = build_rows(
        embeddings, k, m, seed=seed, mask=mask, backend=backend, block_size=block_size,
        index_params=index_params, num_threads=num_threads, shard=shard,
        keep_scores=True, show_progress=show_progress, device=device, precision=precision,
    )
    rows = np.arange(built.neighbors.shape[0], dtype=np.int64) if built.rows is None else built.rows
    return rows.astype(np.int64), built.neighbors.astype(np.int64), built.scores


# ---------------------------------------------------------------------- helpers


def _read_meta(text: str, where: str) -> dict[str, Any]:
    """Graph metadata: JSON, or the Python literal that files of version 0.1 hold."""
    import ast

    try:
        meta = json.loads(text)
    except json.JSONDecodeError:
        try:
            meta = ast.literal_eval(text)
        except (ValueError, SyntaxError) as error:
            raise ValueError(f"{where}: the graph metadata cannot be read ({error})") from error
    if not isinstance(meta, dict):
        raise ValueError(f"{where}: the graph metadata is not a mapping")
    return meta


def _seed_repr(seed: Any) -> Any:
    if isinstance(seed, np.random.SeedSequence):
        return {"entropy": seed.entropy, "spawn_key": tuple(seed.spawn_key)}
    return seed


def _abridged(value: Any, most: int = 8) -> Any:
    """``value`` with every list longer than ``most`` shown as its length (for ``repr``: a
    hardness search stores per-batch records in ``build_params``)."""
    if isinstance(value, dict):
        return {key: _abridged(item, most) for key, item in value.items()}
    if isinstance(value, list | tuple) and len(value) > most:
        return f"<{len(value)} values>"
    return value
