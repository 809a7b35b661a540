r"""Random walk with restart (RWR) over a :class:`~batchsampler.graph.ProximityGraph`.

A batch grows from a seed node: at every step the walker returns to the seed with probability
``restart_prob`` (alpha), otherwise it moves to a uniformly chosen out-neighbour, and every
node it reaches that is still available joins the batch. Large alpha keeps the walk in the
seed's immediate neighbourhood (hardest batches); small alpha lets it drift (closer to uniform).

Two epoch semantics:

* ``replacement=False`` (default): every index appears exactly once per epoch, like
  ``DataLoader(shuffle=True)``. The walk passes through nodes already used this epoch but only
  collects unused ones. After ``max_fruitless_steps`` consecutive steps without a new node it
  re-seeds at a random unused node, so it terminates on any graph (isolated components,
  ``alpha = 1``, ``k < B - 1``).
* ``replacement=True``: every batch is an independent walk from a uniformly random seed with
  ``batch_size`` distinct nodes; nodes recur across batches (closer to the authors' code).

Both produce ``ceil(N / B)`` batches per epoch, or ``N // B`` with ``drop_last``. All randomness
comes from the :class:`numpy.random.Generator` passed in.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ._validation import check_int, check_probability
from .graph import ProximityGraph

__all__ = ["DEFAULT_WALKERS", "WalkStats", "grow_batches", "neighborhood_batches", "num_batches", "random_walk_batches"]

DEFAULT_WALKERS = 16
"""Walkers advanced in lock-step in exactly-once mode (hides memory latency at large N)."""


@dataclass
class WalkStats:
    """Counters of one epoch of walking (reset by the caller)."""

    steps: int = 0
    """Moves made (restarts included)."""
    restarts: int = 0
    """Moves that returned to the seed."""
    reseeds: int = 0
    """Times a batch started again from a fresh random seed after fruitless steps."""

    def _add(self, counters: np.ndarray) -> None:
        self.steps += int(counters[0])
        self.restarts += int(counters[1])
        self.reseeds += int(counters[2])


def num_batches(num_instances: int, batch_size: int, drop_last: bool) -> int:
    """Batches per epoch: ``N // B`` with ``drop_last``, else ``ceil(N / B)``."""
    if drop_last:
        return num_instances // batch_size
    return -(-num_instances // batch_size)


def _batch_sizes(num_nodes: int, batch_size: int, drop_last: bool, replacement: bool) -> np.ndarray:
    """int64 target size of every batch of an epoch."""
    total = num_batches(num_nodes, batch_size, drop_last)
    sizes = np.full(total, batch_size, dtype=np.int64)
    if total and not replacement and not drop_last:
        sizes[-1] = num_nodes - (total - 1) * batch_size
    return sizes


def _check_used(used: np.ndarray, num_nodes: int) -> np.ndarray:
    used = np.asarray(used)
    if used.shape != (num_nodes,) or used.dtype not in (np.bool_, np.uint8):
        raise ValueError(
            f"used must be a bool or uint8 array of shape ({num_nodes},), got {used.dtype} {used.shape}"
        )
    return used


def unused_count(used: np.ndarray) -> int:
    """Number of instances ``used`` leaves available (its zero entries)."""
    return int(used.size - np.count_nonzero(used))


def _not_enough(free: int, need: int, what: str) -> ValueError:
    return ValueError(
        f"fewer unused instances ({free}) than {what} ({need}); an epoch takes every index at "
        "most once, so the batch cannot be filled"
    )


def _check_kernel(status: int, free: int, need: int, what: str) -> None:
    """Raise for a kernel's error code (-1: no unused node left to seed with)."""
    if status != 0:
        raise _not_enough(free, need, what)


def _regular_degree(graph: ProximityGraph) -> int:
    """The out-degree of a regular graph (its rows start at ``node * k``: the walk then never
    reads ``indptr``), else 0."""
    return int(graph.indptr[1]) if graph.is_regular and graph.num_edges else 0


def grow_batches(
    graph: ProximityGraph,
    used: np.ndarray,
    sizes: list[int] | np.ndarray,
    restart_prob: float,
    rng: np.random.Generator,
    *,
    max_fruitless_steps: int = 64,
    num_walkers: int = DEFAULT_WALKERS,
    stats: WalkStats | None = None,
    vectors: np.ndarray | None = None,
    reseed_candidates: int = 0,
) -> list[list[int]]:
    """Grow ``len(sizes)`` RWR batches at once from the nodes ``used`` leaves available.

    The building block for samplers that produce an epoch in groups (to resume or swap graphs
    between groups): walkers in lock-step, one per batch (up to ``num_walkers`` at a time),
    each seeded at a uniformly random unused node and re-seeded the same way after
    ``max_fruitless_steps`` fruitless steps. A group is a deterministic function of the graph,
    ``used`` and the generator state.

    Args:
        graph: the proximity graph.
        used: bool or uint8 ``[N]``, nonzero for nodes not available; the nodes taken are
            marked in place.
        sizes: size of every batch; their sum must not exceed the number of unused nodes.
        restart_prob: alpha in ``[0, 1]``.
        rng: the only source of randomness.
        max_fruitless_steps: consecutive steps without a new node before re-seeding.
        num_walkers: batches grown at the same time.
        stats: optional counters to accumulate into.
        vectors: float ``[N, d]`` embeddings (e.g. the bank), needed for guided re-seeds.
        reseed_candidates: ``c >= 0`` (default 0: a stalled walker re-seeds at a uniformly
            random unused node). With ``c > 0`` it re-seeds at the unused node most similar
            (cosine, in ``vectors``) to its batch's first seed among ``c`` random unused ones.
            Late in an exactly-once epoch the graph neighbourhoods are used up and walks stall
            at almost every node; random re-seeds then make near-uniform batches, guided ones
            keep them near their seed (see :mod:`batchsampler.hardness`). Costs ``c * d``
            multiply-adds per re-seed.

    Returns:
        One list of distinct node ids per batch, in the order of ``sizes``.

    Raises:
        ValueError: if ``used`` has the wrong shape or dtype, too few nodes are unused,
            ``reseed_candidates < 0``, or ``reseed_candidates > 0`` without ``vectors`` of
            ``N`` rows.
    """
    from . import _walk_numba as kernels

    n = graph.num_nodes
    used = _check_used(used, n)
    restart_prob = check_probability("restart_prob", restart_prob)
    max_fruitless_steps = check_int("max_fruitless_steps", max_fruitless_steps)
    sizes = np.asarray(sizes, dtype=np.int64).reshape(-1)
    if sizes.size == 0:
        return []
    if (sizes < 1).any():
        raise ValueError(f"sizes must be >= 1, got {sizes.tolist()}")
    reseed_candidates = check_int("reseed_candidates", reseed_candidates, low=0)
    guide = _guide_vectors(vectors, n) if reseed_candidates else _NO_VECTORS
    need, free = int(sizes.sum()), unused_count(used)
    if need > free:
        raise ValueError(f"sizes must sum to at most the unused nodes: {_not_enough(free, need, 'the batches need')}")
    width = int(sizes.max())
    order = np.empty(sizes.size * width, dtype=np.int64)
    counters = np.zeros(3, dtype=np.int64)
    # Guided re-seeds draw candidates by rejection; once most nodes are used, from the list of
    # unused ones (an O(N) scan per group, only in the last quarter of an epoch).
    free_ids = np.flatnonzero(used == 0) if reseed_candidates and free * 4 < n else _NO_IDS
    status = kernels.rwr_exactly_once(
        graph.indptr, graph.indices, _regular_degree(graph), restart_prob, width, sizes,
        max_fruitless_steps, max(1, int(num_walkers)), _NO_IDS, rng, order, counters, used,
        guide, free_ids, reseed_candidates,
    )
    _check_kernel(status, free, need, "the batches need")  # a safety net: ruled out above
    if stats is not None:
        stats._add(counters)
    return list(_yield_batches(order, sizes, width))


_NO_IDS = np.zeros(0, dtype=np.int64)
_NO_VECTORS = np.zeros((0, 0), dtype=np.float32)


def _guide_vectors(vectors: np.ndarray | None, num_nodes: int) -> np.ndarray:
    """``vectors`` as the float32 C-contiguous ``[N, d]`` array the kernel reads (no copy if it is one)."""
    if vectors is None:
        raise ValueError("reseed_candidates > 0 needs vectors (the [N, d] embeddings to compare)")
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] != num_nodes:
        raise ValueError(f"vectors must have shape ({num_nodes}, d), got {vectors.shape}")
    return vectors


def _walkers(requested: int, total: int) -> int:
    """Walkers actually used: concurrency only where the epoch is long enough to hide it."""
    return max(1, min(int(requested), total // 8))


def _yield_batches(order: np.ndarray, sizes: np.ndarray, batch_size: int) -> Iterator[list[int]]:
    for b, size in enumerate(sizes.tolist()):
        yield order[b * batch_size : b * batch_size + size].tolist()


def random_walk_batches(
    graph: ProximityGraph,
    batch_size: int,
    restart_prob: float,
    rng: np.random.Generator,
    *,
    replacement: bool = False,
    drop_last: bool = False,
    max_fruitless_steps: int = 64,
    stats: WalkStats | None = None,
    num_walkers: int = DEFAULT_WALKERS,
) -> Iterator[list[int]]:
    """Yield one epoch of RWR batches (lists of distinct node ids).

    The whole epoch is computed by a compiled kernel when the first batch is requested
    (about 0.3 s per million nodes), then yielded batch by batch.

    Args:
        graph: the proximity graph; nodes without out-edges act as dead ends (restart).
        batch_size: ``B``, in ``[1, N]``.
        restart_prob: alpha in ``[0, 1]``.
        rng: the only source of randomness.
        replacement: see the module docstring.
        drop_last: drop the last, smaller batch (exactly-once mode only; with replacement
            every batch is full and ``drop_last`` only sets the count).
        max_fruitless_steps: consecutive steps without a new node before re-seeding.
        stats: optional counters to accumulate into.
        num_walkers: batches grown in lock-step in exactly-once mode (``W``, at most one per
            8 batches of the epoch, so small epochs stay close to sequential): batches
            ``b .. b + W - 1`` compete for unused nodes the way consecutive batches of a single
            walker do. Part of the seeded result: the same value gives the same epoch.

    Yields:
        ``ceil(N / B)`` (or ``N // B`` with ``drop_last``) lists of ints.
    """
    from . import _walk_numba as kernels

    n = graph.num_nodes
    batch_size = check_int("batch_size", batch_size, low=1, high=n if replacement else None)
    restart_prob = check_probability("restart_prob", restart_prob)
    max_fruitless_steps = check_int("max_fruitless_steps", max_fruitless_steps)
    sizes = _batch_sizes(n, batch_size, drop_last, replacement)
    counters = np.zeros(3, dtype=np.int64)
    order = np.empty(sizes.size * batch_size, dtype=np.int64)
    regular_k = _regular_degree(graph)
    if sizes.size:
        if replacement:
            status = kernels.rwr_replacement(
                graph.indptr, graph.indices, regular_k, n, restart_prob, batch_size, sizes.size,
                max_fruitless_steps, rng, order, counters,
            )
        else:
            status = kernels.rwr_exactly_once(
                graph.indptr, graph.indices, regular_k, restart_prob, batch_size, sizes,
                max_fruitless_steps, _walkers(num_walkers, sizes.size), rng.permutation(n), rng, order, counters,
                np.zeros(n, dtype=np.uint8), _NO_VECTORS, _NO_IDS, 0,
            )
        # A safety net: batch_size <= N and sizes summing to at most N rule the error out.
        _check_kernel(status, n, batch_size if replacement else int(sizes.sum()), "the epoch needs")
    if stats is not None:
        stats._add(counters)
    yield from _yield_batches(order, sizes, batch_size)


def neighborhood_batches(
    graph: ProximityGraph,
    batch_size: int,
    rng: np.random.Generator,
    *,
    replacement: bool = False,
    drop_last: bool = False,
    max_fruitless_steps: int = 64,
    stats: WalkStats | None = None,
) -> Iterator[list[int]]:
    """Yield one epoch of kNN batches: an anchor and its nearest available neighbours.

    Neighbours are taken breadth-first in rank order (the anchor's neighbours by decreasing
    similarity, then theirs), so with ``k >= B - 1`` and a fresh anchor a batch is exactly the
    anchor and its ``B - 1`` nearest neighbours (the paper's kNN sampler). When the frontier
    runs dry, or ``max_fruitless_steps`` used nodes come in a row, a fresh random anchor
    continues the batch. Same epoch semantics and arguments as :func:`random_walk_batches`.
    """
    from . import _walk_numba as kernels

    n = graph.num_nodes
    batch_size = check_int("batch_size", batch_size, low=1, high=n if replacement else None)
    max_fruitless_steps = check_int("max_fruitless_steps", max_fruitless_steps)
    sizes = _batch_sizes(n, batch_size, drop_last, replacement)
    counters = np.zeros(3, dtype=np.int64)
    order = np.empty(sizes.size * batch_size, dtype=np.int64)
    if sizes.size:
        seed_order = np.zeros(0, np.int64) if replacement else rng.permutation(n)
        status = kernels.bfs_epoch(
            graph.indptr, graph.indices, n, batch_size, sizes, max_fruitless_steps,
            bool(replacement), seed_order, rng, order, counters,
        )
        _check_kernel(status, n, batch_size if replacement else int(sizes.sum()), "the epoch needs")
    if stats is not None:
        stats._add(counters)
    yield from _yield_batches(order, sizes, batch_size)
