"""Validation and dispatch of graph construction, shared by :meth:`ProximityGraph.build` and
:func:`batchsampler.graph.build_neighbor_rows`.

Backends: ``"random"`` (the paper's graph: top ``k`` of ``m`` random candidates, blocked
GEMMs), ``"exact"`` (all-pairs blocked GEMM; used automatically when ``m >= N - 1``),
``"hnsw"`` and ``"ivf"`` (approximate kNN with FAISS indexes, for the true neighbourhood at
large ``N``).

With a ``device`` the work runs in torch on that device (:mod:`batchsampler._torch_build`):
same validation, same random plan and generator draws, same result arrays on the CPU.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._threads import check_main_process, default_workers, limit_threads
from ._validation import check_int, to_numpy_2d

BACKENDS = ("random", "exact", "hnsw", "ivf")

logger = logging.getLogger(__name__)


@dataclass
class BuiltRows:
    """Rows of a regular graph computed by one process.

    Attributes:
        rows: int64 ``[R]`` node ids of the rows, or ``None`` for all ``N`` nodes in order.
        neighbors: int32 ``[R, k]`` by decreasing similarity. Built with ``out``: the ``[N, k]``
            output table itself, whose rows ``rows`` (all rows when ``None``) hold the result.
        scores: float32 ``[R, k]`` cosine similarities (NaN for random edges of masked rows),
            or ``None`` when not kept; with ``out``, its ``[N, k]`` score table.
        params: build parameters to record (``k``, ``m``, ``backend``, ...).
    """

    rows: np.ndarray | None
    neighbors: np.ndarray
    scores: np.ndarray | None
    params: dict[str, Any]


def build_rows(
    embeddings: Any,
    k: int,
    m: int,
    *,
    seed: int | np.random.SeedSequence,
    mask: np.ndarray | None,
    backend: str,
    block_size: int | None,
    index_params: dict[str, Any] | None,
    num_threads: int | None,
    shard: tuple[int, int],
    keep_scores: bool,
    show_progress: bool,
    device: Any = None,
    precision: Any = "float32",
    out: tuple[np.ndarray, np.ndarray | None] | None = None,
) -> BuiltRows:
    """Validate the arguments and compute the rows of ``shard`` (see ``build_neighbor_rows``).

    ``device`` ``None``: the NumPy build. A torch device: the build of
    :mod:`batchsampler._torch_build` on that device (same plan, same graph up to float ties).

    ``out``: an int32 and a float32 ``[N, k]`` table (the second ``None`` without
    ``keep_scores``) that receive the shard's rows at their node rows, e.g. a rank's part of a
    table in shared memory; the other rows are left as they are. The NumPy random backend
    without a mask writes every block's top ``k`` straight there (no ``[R, k]`` arrays of its
    own: no fresh memory, no copy); other builds compute their rows and copy them in. The
    result's ``neighbors`` and ``scores`` are then these tables.
    """
    check_main_process("Building a proximity graph")
    if device is not None:
        from . import _torch_build

        device = _torch_build.build_device(device, embeddings)
        x = _torch_build.to_tensor_2d("embeddings", embeddings, device)
    else:
        x = to_numpy_2d("embeddings", embeddings)
    num_nodes = x.shape[0]
    k = check_int("k", k, low=1)
    m = check_int("m", m, low=1)
    if block_size is not None:
        block_size = check_int("block_size", block_size, low=1)
    if num_threads is not None:
        num_threads = check_int("num_threads", num_threads, low=1)
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if device is not None or precision != "float32":
        from ._torch_build import check_precision

        precision = check_precision(precision, device)
    rank, world = _check_shard(shard)
    if out is not None:
        out = _check_out(out, num_nodes, k, keep_scores)
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
            x = x[valid_rows] if device is None else x[torch_index(valid_rows, device)]
    if device is not None:
        built = _build_on_device(
            x, num_nodes, valid_rows, k, m, seed=seed, backend=backend, block_size=block_size,
            index_params=index_params, num_threads=num_threads, rank=rank, world=world,
            keep_scores=keep_scores, show_progress=show_progress, device=device, precision=precision,
        )
        return built if out is None else _copy_out(built, out)
    x, squares = _check_rows(x, num_nodes, valid_rows is not None)

    rng = np.random.default_rng(seed)
    n = x.shape[0]
    if backend == "random" and m >= n - 1:
        backend = "exact"
    params: dict[str, Any] = {"k": k, "m": m, "exact": backend == "exact", "backend": backend}
    with limit_threads(num_threads):
        workers = num_threads or default_workers()
        if backend == "random":
            direct = out if valid_rows is None else None  # masked: rows over the kept ids, remapped below
            rows, neighbors, scores, params["block_size"] = _random(
                x, k, m, rng, block_size, rank, world, keep_scores, workers, show_progress, direct, squares
            )
            if direct is not None:
                return BuiltRows(rows, neighbors, scores, params)
        else:
            from ._knn import EXACT_TILE

            x = _normalize_rows(x)
            tiles = None if world == 1 else list(range(rank, -(-n // EXACT_TILE), world))
            if backend == "exact":
                rows, neighbors, scores = _exact(x, k, tiles, workers, show_progress)
            else:
                from ._faiss_knn import faiss_rows

                rows = _tile_rows(n, tiles)
                neighbors, scores = faiss_rows(
                    x, k, backend, rows, index_params, rng, show_progress=show_progress
                )
                params["index_params"] = dict(index_params or {})
            if world == 1:
                rows = None
    if valid_rows is not None:
        rows, neighbors, scores = _add_masked_rows(
            rows, neighbors, scores, valid_rows, num_nodes, rng, rank, world, keep_scores
        )
    built = BuiltRows(rows, neighbors, scores if keep_scores else None, params)
    return built if out is None else _copy_out(built, out)


def _check_out(out: Any, num_nodes: int, k: int, keep_scores: bool) -> tuple[np.ndarray, np.ndarray | None]:
    try:
        neighbors, scores = out
    except (TypeError, ValueError):
        raise ValueError("out must be a pair (neighbors, scores) of [N, k] arrays") from None
    expected = [("neighbors", neighbors, np.int32)]
    if keep_scores:
        expected.append(("scores", scores, np.float32))
    elif scores is not None:
        raise ValueError("out scores must be None when scores are not kept")
    for name, array, dtype in expected:
        if not (
            isinstance(array, np.ndarray) and array.dtype == dtype and array.shape == (num_nodes, k)
            and array.flags.c_contiguous and array.flags.writeable
        ):
            shown = f"{array.dtype} {array.shape}" if isinstance(array, np.ndarray) else type(array).__name__
            raise ValueError(
                f"out {name} must be a writable C-contiguous {np.dtype(dtype)} array of shape ({num_nodes}, {k}), "
                f"got {shown}"
            )
    return neighbors, scores


def _copy_out(built: BuiltRows, out: tuple[np.ndarray, np.ndarray | None]) -> BuiltRows:
    """``built`` with its rows copied into the ``out`` tables (a build that computed rows of its own)."""
    neighbors, scores = out
    where = slice(None) if built.rows is None else built.rows
    neighbors[where] = built.neighbors
    if scores is not None:
        scores[where] = built.scores
    return BuiltRows(built.rows, neighbors, scores, built.params)


def torch_index(rows: np.ndarray, device: Any) -> Any:
    """``rows`` as an int64 tensor on ``device`` (for indexing a device tensor)."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(rows, dtype=np.int64)).to(device)


def _build_on_device(
    x, num_nodes, valid_rows, k, m, *, seed, backend, block_size, index_params, num_threads,
    rank, world, keep_scores, show_progress, device, precision,
) -> BuiltRows:
    """``build_rows`` for a torch tensor ``x`` on ``device`` (masked rows already taken out).

    Mirrors the NumPy branch step by step: the same generator draws, in the same order, the
    random plan (or nothing, for exact kNN), then the masked rows' random edges.
    """
    from . import _torch_build as tb

    masked = valid_rows is not None
    x, squares, has_zero = tb.check_rows(x, lambda zero: _warn_zero_rows(zero, x.shape[0], num_nodes, masked))
    rng = np.random.default_rng(seed)
    n = x.shape[0]
    if backend == "random" and m >= n - 1:
        backend = "exact"
    params: dict[str, Any] = {"k": k, "m": m, "exact": backend == "exact", "backend": backend}
    params.update(device=device.type, precision=precision)
    with limit_threads(num_threads), tb._DeviceScope(device):
        if backend == "random":
            from . import _knn

            size = min(block_size or _knn.default_block_size(m), m + 1)
            plan = _knn.plan_random(n, m, rng, size)
            blocks = list(range(rank, plan.num_blocks, world))
            neighbors, scores = tb.random_rows(
                x, squares, k, plan, blocks, slot_order=world > 1, precision=precision,
                has_zero=has_zero, keep_scores=keep_scores, show_progress=show_progress,
            )
            rows = None
            if world > 1:
                slots = [np.arange(s.start, s.stop) for s in map(plan.block_rows, blocks)]
                rows = plan.anchors[np.concatenate(slots or [np.zeros(0, np.int64)])]
            params["block_size"] = plan.block_size
        else:
            from ._knn import EXACT_TILE

            tiles = None if world == 1 else list(range(rank, -(-n // EXACT_TILE), world))
            rows = _tile_rows(n, tiles)
            if backend == "exact":
                neighbors, scores = tb.exact_rows(
                    tb.unit_rows(x), k, rows, precision=precision, index_params=index_params,
                    show_progress=show_progress,
                )
            else:
                from ._faiss_knn import faiss_rows

                host = _normalize_rows(x.cpu().numpy())  # FAISS indexes take host arrays
                gpu = None
                if backend == "ivf" and device.type == "cuda" and tb.faiss_gpu_count() > 0:
                    gpu = tb._gpu_index(device)
                else:
                    logger.info("backend=%r with device=%s: the FAISS index is built on the CPU", backend, device)
                neighbors, scores = faiss_rows(
                    host, k, backend, rows, index_params, rng, show_progress=show_progress, gpu=gpu
                )
                params["index_params"] = dict(index_params or {})
            if world == 1:
                rows = None
    if masked:
        rows, neighbors, scores = _add_masked_rows(
            rows, neighbors, scores, valid_rows, num_nodes, rng, rank, world, keep_scores
        )
    return BuiltRows(rows, neighbors, scores if keep_scores else None, params)


def _warn_zero_rows(zero: int, rows: int, num_nodes: int, masked: bool) -> None:
    kept = f"the {rows} rows the mask keeps" if masked else f"{num_nodes} embedding rows"
    logger.warning(
        "%d of %s are all zero: they have cosine similarity 0 to everything, so their "
        "neighbours are arbitrary and they are seldom anyone's neighbour (a node without "
        "in-edges is only reached by a walk as a seed). Check the encoder's output, or pass "
        "a mask that leaves out rows never filled.",
        zero, kept,
    )


def _check_rows(x: np.ndarray, num_nodes: int, masked: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Warn about all-zero rows; return ``x``, with unit rows if its scale could overflow.

    One pass computes the squared norms (float64). A zero norm is an all-zero row: it has
    cosine similarity 0 to everything, which a warning reports with the count. Norms above
    ``sqrt(float32 max / 4)`` could overflow the float32 dot products of the build (to inf,
    or NaN from inf - inf): then the rows are scaled to unit norm first, which leaves every
    cosine similarity, and so the graph, as it is.

    Returns:
        ``x`` (or its unit rows) and the squared norms of the returned rows when they are those
        computed here (float32 ``x`` left as it is: the random backend's inverse norms are
        computed from them, saving a second pass over ``[N, d]``), else ``None``.
    """
    squares = np.einsum("ij,ij->i", x, x, dtype=np.float64)
    zero = int(squares.size - np.count_nonzero(squares))
    if zero:
        _warn_zero_rows(zero, x.shape[0], num_nodes, masked)
    if not squares.max() > np.finfo(np.float32).max / 4:  # also catches inf (float64 overflow)
        return x, squares if x.dtype == np.float32 else None
    x = np.asarray(x, dtype=np.float64)
    scale = np.abs(x).max(axis=1, keepdims=True)  # to [-1, 1] first: the squares stay finite
    x = x / np.where(scale > 0, scale, 1.0)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.where(norms > 0, norms, 1.0)).astype(np.float32), None


def _inverse_norms(x: np.ndarray, squares: np.ndarray | None) -> np.ndarray:
    """:func:`batchsampler._knn.inverse_norms` of float32 ``x``, from its squared norms when known."""
    from . import _knn

    if squares is None:
        return _knn.inverse_norms(x)
    # The formula of _knn.inverse_norms (tests/test_build.py checks that both agree bit for bit).
    return (1.0 / np.maximum(np.sqrt(squares), np.finfo(np.float32).tiny)).astype(np.float32)


def _check_shard(shard: Any) -> tuple[int, int]:
    try:
        rank, world = shard
    except (TypeError, ValueError):
        raise ValueError(f"shard must be a pair (rank, world_size), got {shard!r}") from None
    world = check_int("shard world_size", world, low=1)
    rank = check_int("shard rank", rank, low=0, high=world - 1)
    return rank, world


def _tile_rows(n: int, tiles: list[int] | None) -> np.ndarray:
    from ._knn import EXACT_TILE

    if tiles is None:
        return np.arange(n, dtype=np.int64)
    parts = [np.arange(t * EXACT_TILE, min(n, (t + 1) * EXACT_TILE)) for t in tiles]
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def _random(x, k, m, rng, block_size, rank, world, keep_scores, workers, show_progress, out=None, squares=None):
    """The random backend's rows; with ``out``, written straight into its ``[N, k]`` tables.

    ``squares``: the float64 squared norms of float32 ``x`` (from :func:`_check_rows`), or ``None``.
    """
    from threadpoolctl import threadpool_limits

    from . import _knn

    n = x.shape[0]
    x = np.ascontiguousarray(x, dtype=np.float32)  # no copy for float32 C-contiguous input
    block_size = min(block_size or _knn.default_block_size(m), m + 1)
    plan = _knn.plan_random(n, m, rng, block_size)
    blocks = list(range(rank, plan.num_blocks, world))
    if world == 1:  # rows land directly in node order
        rows, out_rows = None, plan.anchors
        count = n
    else:
        slots = np.concatenate([np.arange(s.start, s.stop) for s in map(plan.block_rows, blocks)] or [np.zeros(0, np.int64)])
        rows = plan.anchors[slots]
        if out is None:
            out_rows = np.empty(n, dtype=np.int64)
            out_rows[slots] = np.arange(slots.size)
        else:
            out_rows = plan.anchors  # slot s goes to node row anchors[s] of the full table
        count = slots.size
    if out is None:
        neighbors = np.empty((count, k), dtype=np.int32)
        scores = np.empty((count, k), dtype=np.float32) if keep_scores else None
    else:
        neighbors, scores = out
    inv_norms = _inverse_norms(x, squares)
    with threadpool_limits(limits=1, user_api="blas"):  # parallel over blocks instead
        _knn.random_rows(
            x, inv_norms, k, plan, blocks, neighbors, scores, out_rows,
            workers=workers, show_progress=show_progress,
        )
    return rows, neighbors, scores, plan.block_size


def _exact(x, k, tiles, workers, show_progress):
    from threadpoolctl import threadpool_limits

    from ._knn import exact_rows

    with threadpool_limits(limits=1, user_api="blas"):
        return exact_rows(x, k, tiles, workers=workers, show_progress=show_progress)


def _add_masked_rows(rows, neighbors, scores, valid_rows, num_nodes, rng, rank, world, keep_scores):
    """Map rows computed over ``valid_rows`` to node ids and append this shard's masked rows.

    Every shard draws the random edges of *all* masked rows (same generator state everywhere)
    and keeps rows ``p`` of the masked list with ``p % world == rank``.
    """
    k = neighbors.shape[1]
    rows = valid_rows[np.arange(valid_rows.size) if rows is None else rows]
    neighbors = valid_rows[neighbors].astype(np.int32)
    masked = np.setdiff1d(np.arange(num_nodes), valid_rows)
    masked_neighbors = random_distinct_neighbors(rng, masked, k, num_nodes)[rank::world]
    masked = masked[rank::world]
    rows = np.concatenate([rows, masked])
    neighbors = np.concatenate([neighbors, masked_neighbors.astype(np.int32)])
    if keep_scores:
        scores = np.concatenate([scores, np.full((masked.size, k), np.nan, dtype=np.float32)])
    return rows, neighbors, scores


_DISTINCT_CHUNK = 8192  # rows drawn per round by random_distinct_neighbors (fixed: part of the result)


def random_distinct_neighbors(
    rng: np.random.Generator, rows: np.ndarray, k: int, num_nodes: int
) -> np.ndarray:
    """``[len(rows), k]`` uniformly random distinct ids in ``[0, num_nodes)``, never the row itself.

    Args:
        rng: source of randomness.
        rows: int ``[R]`` the node of every row.
        k: ids per row, ``k < num_nodes``.
        num_nodes: ``N``.

    Returns:
        int64 ``[R, k]``.
    """
    from ._distinct import partial_shuffle_rows

    rows = np.asarray(rows, dtype=np.int64).reshape(-1)
    k = check_int("k", k, low=0)
    num_nodes = check_int("num_nodes", num_nodes, low=1)
    if k >= num_nodes:
        raise ValueError(f"k must be < num_nodes ({num_nodes}), got k={k}")
    out = np.empty((rows.size, k), dtype=np.int64)
    if rows.size == 0 or k == 0:
        return out
    # Each row: the first k entries of a uniformly random permutation of range(N - 1) (a
    # partial Fisher-Yates shuffle over a virtual permutation, exactly k swaps: O(k) per row
    # whatever N is, no retries), shifted past the row itself. Exactly uniform over ordered
    # k-subsets. The draws come in fixed chunks of rows, so memory stays O(chunk * k) and the
    # result is a function of the generator state alone.
    population = num_nodes - 1
    draws = np.empty((k, min(rows.size, _DISTINCT_CHUNK)), dtype=np.int64)
    for start in range(0, rows.size, _DISTINCT_CHUNK):
        stop = min(rows.size, start + _DISTINCT_CHUNK)
        chunk = draws if stop - start == draws.shape[1] else np.empty((k, stop - start), dtype=np.int64)
        for i in range(k):  # swap partner of position i: uniform in [i, N - 1)
            chunk[i] = rng.integers(i, population, size=stop - start)
        if not partial_shuffle_rows(chunk, population, rows[start:stop], out[start:stop]):
            raise RuntimeError("random_distinct_neighbors: hash table overflow (a bug)")
    return out


def _normalize_rows(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    # Zero rows stay zero (similarity 0 to everything) instead of becoming NaN.
    return x / np.maximum(norms, np.finfo(np.float32).tiny)
