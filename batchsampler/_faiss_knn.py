"""Approximate kNN rows with FAISS indexes: HNSW (graph index) and IVF (inverted lists).

For users who want the true neighbourhood (not the paper's random-candidate graph) at sizes
where the exact graph's ``O(N^2)`` products are too slow. Recall against the exact graph is
measured by ``benchmarks/bench_exact_knn.py``.

Determinism: IVF trains k-means with a seed drawn from the build's generator, so a seed gives
the same graph. HNSW inserts points from several threads; with ``num_threads > 1`` its graph
(and so a few neighbours) may differ between runs.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from tqdm.auto import tqdm

_SEARCH_ROWS = 8192  # queries per FAISS search call


def default_index_params(backend: str, n: int, k: int) -> dict[str, int]:
    """Index settings used unless ``index_params`` overrides them.

    HNSW: ``M`` links per node, ``ef_construction`` and ``ef_search`` beam widths.
    IVF: ``nlist`` k-means cells (about ``4 sqrt(N)``, at least 39 training points each) and
    ``nprobe`` cells visited per query (5 %). On the benchmark's clustered data (N = 1e5,
    d = 128, K = 32) these give recall@K of about 0.96 (HNSW) and 0.93 (IVF); raise
    ``ef_search`` / ``nprobe`` for more recall at proportionally more search time.
    """
    if backend == "hnsw":
        return {"M": 32, "ef_construction": 64, "ef_search": max(128, 2 * (k + 1))}
    nlist = max(1, min(round(4 * math.sqrt(n)), n // 39))
    return {"nlist": nlist, "nprobe": min(nlist, max(16, nlist // 20))}


def faiss_rows(
    x: np.ndarray,
    k: int,
    backend: str,
    rows: np.ndarray,
    index_params: dict[str, Any] | None,
    rng: np.random.Generator,
    *,
    show_progress: bool = False,
    gpu: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Approximate top ``k`` cosine neighbours (self excluded) of ``rows``.

    Args:
        x: float32 ``[N, d]`` unit rows, C-contiguous (all of them are indexed).
        k: neighbours per row, ``k < N``.
        backend: ``"hnsw"`` or ``"ivf"``.
        rows: int64 ``[R]`` nodes to search for.
        index_params: overrides of :func:`default_index_params`.
        rng: draws the IVF training sample and k-means seed, and fills short result lists.
        gpu: CUDA device of FAISS's GPU build for an IVF index (``None``: the CPU). HNSW has
            no GPU version in FAISS and always runs on the CPU.

    Returns:
        ``(neighbors, scores)``: int32 ``[R, k]`` by decreasing similarity, float32 ``[R, k]``.

    Raises:
        ValueError: on unknown ``index_params`` keys.
    """
    import faiss

    n, dim = x.shape
    params = default_index_params(backend, n, k)
    unknown = set(index_params or {}) - set(params)
    if unknown:
        raise ValueError(f"index_params: unknown keys {sorted(unknown)} for {backend!r}; known: {sorted(params)}")
    params.update(index_params or {})
    if backend == "hnsw":
        index = faiss.IndexHNSWFlat(dim, int(params["M"]), faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = int(params["ef_construction"])
        index.add(x)
        index.hnsw.efSearch = int(params["ef_search"])
    else:
        nlist = int(params["nlist"])
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        seed = int(rng.integers(2**31 - 1))
        index.cp.seed = seed
        if gpu is not None:  # pragma: no cover - needs faiss-gpu
            from ._torch_build import faiss_resources

            index = faiss.index_cpu_to_gpu(faiss_resources(gpu), gpu, index)
            if hasattr(index, "cp"):  # the GPU index trains its own k-means
                index.cp.seed = seed
        sample = np.sort(rng.choice(n, size=min(n, 64 * nlist), replace=False))
        index.train(x[sample])
        index.add(x)
        index.nprobe = int(params["nprobe"])
    neighbors = np.empty((rows.size, k), dtype=np.int32)
    scores = np.empty((rows.size, k), dtype=np.float32)
    for start in tqdm(range(0, rows.size, _SEARCH_ROWS), desc=f"{backend} search", disable=not show_progress):
        chunk = rows[start : start + _SEARCH_ROWS]
        sims, ids = index.search(x[chunk], k + 1)
        neighbors[start : start + chunk.size], scores[start : start + chunk.size] = _drop_self(
            x, chunk, sims, ids, k, rng
        )
    return neighbors, scores


def _drop_self(
    x: np.ndarray, rows: np.ndarray, sims: np.ndarray, ids: np.ndarray, k: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """First ``k`` results that are neither the row itself nor missing (-1), per row.

    Rows with fewer than ``k`` such results (an IVF probe that saw too few points) are
    completed with random other nodes, scored exactly and merged in order.
    """
    valid = (ids >= 0) & (ids != rows[:, None])
    order = np.argsort(~valid, axis=1, kind="stable")[:, :k]  # valid results first, in rank order
    neighbors = np.take_along_axis(ids, order, axis=1)
    scores = np.take_along_axis(sims, order, axis=1)
    for r in np.flatnonzero(valid.sum(axis=1) < k).tolist():
        have = neighbors[r][np.take_along_axis(valid, order, axis=1)[r]]
        pool = np.setdiff1d(np.arange(x.shape[0]), np.append(have, rows[r]))
        extra = rng.choice(pool, size=k - have.size, replace=False)
        ids_r = np.concatenate([have, extra])
        sims_r = x[ids_r] @ x[rows[r]]
        rank = np.argsort(-sims_r, kind="stable")
        neighbors[r], scores[r] = ids_r[rank], sims_r[rank]
    return neighbors.astype(np.int32), scores.astype(np.float32)
