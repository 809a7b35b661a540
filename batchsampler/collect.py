"""Collect one batch of available instances: uniformly, by random walk, or by neighbourhood.

Every function here grows one batch from a ``used`` mask (bool ``[N]``, True for instances
not available) and a :class:`numpy.random.Generator`, and marks what it takes. A sampler's
epoch is a sequence of such calls, batch ``i`` drawing from its own generator seeded by
``(seed, epoch, i)``; batch ``i`` is therefore a pure function of the seed, the epoch, ``i``,
the graph in use and the instances used before it. That is what makes epochs reproducible
across ranks and resumable mid-epoch, and lets a new graph take over between two batches.

The walks are compiled with numba (``cache=True``: compiled once per installation); their
random numbers come from numba's generator, seeded per batch from the batch's NumPy generator.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._validation import check_int, check_probability
from .graph import ProximityGraph
from .walk import WalkStats, _check_used, _not_enough, unused_count

__all__ = ["take_random", "uniform_batch", "walk_batch", "neighborhood_batch"]


def take_random(used: np.ndarray, count: int, rng: np.random.Generator) -> list[int]:
    """Mark and return ``count`` distinct uniformly random unused instances.

    Raises:
        ValueError: if fewer than ``count`` instances are unused (``used`` is left unchanged).
    """
    n = used.size
    picked: list[int] = []
    if count <= 0:
        return picked
    # Rejection sampling is O(count) while most instances are free; near the end of an epoch
    # it falls back to drawing from the explicit complement. One round of draws, no retry
    # loop: whatever the rejections leave missing comes from the complement.
    draws = rng.integers(n, size=2 * count + 16)
    draws = draws[used[draws] == 0]
    _, first = np.unique(draws, return_index=True)
    chosen = draws[np.sort(first)][:count]
    if chosen.size < count:
        # Checked before anything is marked (when the draws alone found ``count`` distinct
        # unused instances there are enough of them, so this costs O(N) only here).
        free = np.flatnonzero(used == 0)
        if free.size < count:
            raise _not_enough(int(free.size), count, "the batch needs")
        free = free[~np.isin(free, chosen, assume_unique=True)]
        chosen = np.concatenate([chosen, rng.choice(free, count - chosen.size, replace=False)])
    used[chosen] = True
    picked = chosen.tolist()
    return picked


def uniform_batch(used: np.ndarray, size: int, rng: np.random.Generator) -> list[int]:
    """A batch of ``size`` uniformly random unused instances (marked used)."""
    return take_random(used, size, rng)


def walk_batch(
    graph: ProximityGraph,
    used: np.ndarray,
    size: int,
    restart_prob: float,
    rng: np.random.Generator,
    *,
    max_fruitless_steps: int = 64,
    stats: WalkStats | None = None,
) -> list[int]:
    """One batch by random walk with restart from a random unused seed.

    At every step the walker returns to the seed with probability ``restart_prob``, otherwise
    moves to a uniformly random out-neighbour; every unused instance it reaches joins the
    batch. After ``max_fruitless_steps`` steps in a row without a new instance it re-seeds at
    a random unused instance, so it terminates on any graph. Requires ``size`` unused instances.

    Raises:
        ValueError: if fewer than ``size`` instances are unused (``used`` is left unchanged),
            or on a bad ``used``, ``size`` or ``restart_prob``.
    """
    used = _check_batch_request(graph, used, size)
    restart_prob = check_probability("restart_prob", restart_prob)
    max_fruitless_steps = check_int("max_fruitless_steps", max_fruitless_steps)
    if size == 0:
        return []
    batch, steps, restarts, reseeds = _walk_kernel(
        graph.indptr, graph.indices, used, size, restart_prob, max_fruitless_steps, _kernel_seed(rng)
    )
    _check_batch(batch, used, size)
    if stats is not None:
        stats.steps += steps
        stats.restarts += restarts
        stats.reseeds += reseeds
    return batch.tolist()


def neighborhood_batch(
    graph: ProximityGraph,
    used: np.ndarray,
    size: int,
    rng: np.random.Generator,
    *,
    max_fruitless_steps: int = 64,
    stats: WalkStats | None = None,
) -> list[int]:
    """One kNN batch: a random unused anchor and its nearest unused neighbours.

    Neighbours are taken breadth-first in rank order (the anchor's neighbours by decreasing
    similarity, then theirs). When the frontier runs dry, or ``max_fruitless_steps`` used
    instances come in a row, a fresh random anchor continues the batch.

    Raises:
        ValueError: if fewer than ``size`` instances are unused (``used`` is left unchanged),
            or on a bad ``used`` or ``size``.
    """
    used = _check_batch_request(graph, used, size)
    max_fruitless_steps = check_int("max_fruitless_steps", max_fruitless_steps)
    if size == 0:
        return []
    batch, steps, reseeds = _neighborhood_kernel(
        graph.indptr, graph.indices, used, size, max_fruitless_steps, _kernel_seed(rng)
    )
    _check_batch(batch, used, size)
    if stats is not None:
        stats.steps += steps
        stats.reseeds += reseeds
    return batch.tolist()


def _check_batch_request(graph: ProximityGraph, used: np.ndarray, size: int) -> np.ndarray:
    """Validate a one-batch request (``used``'s shape and dtype, ``size >= 0``)."""
    if not isinstance(used, np.ndarray):
        raise ValueError(f"used must be a NumPy bool or uint8 array, got {type(used).__name__}")
    used = _check_used(used, graph.num_nodes)
    check_int("size", size, low=0)
    return used


def _check_batch(batch: np.ndarray, used: np.ndarray, size: int) -> None:
    """Raise, with ``used`` restored, if the kernel ran out of unused instances.

    The kernels fail (``batch`` ends in -1) exactly when fewer than ``size`` instances were
    unused: with enough of them every re-seed finds one; with too few, once the walk has taken
    them all every step is fruitless and the next re-seed finds none. So this is the up-front
    check ``size <= unused``, made without an O(N) count on every successful batch.
    """
    if batch.size and batch[-1] < 0:
        used[batch[batch >= 0]] = 0
        raise _not_enough(unused_count(used), size, "the batch needs")


def _kernel_seed(rng: np.random.Generator) -> int:
    return int(rng.integers(2**31 - 1))


@njit(cache=True, nogil=True)
def _random_unused(used: np.ndarray) -> int:
    """A random unused instance, marked used; -1 (nothing marked) if every instance is used.

    Bounded: at most 64 random probes, then a cyclic scan that visits each of the ``n``
    instances at most once.
    """
    n = used.size
    for _ in range(64):
        node = np.random.randint(0, n)
        if not used[node]:
            used[node] = True
            return node
    # Nearly everything is used: scan cyclically from a random start to the next free one.
    node = np.random.randint(0, n)
    for _ in range(n):
        if not used[node]:
            used[node] = True
            return node
        node = node + 1 if node + 1 < n else 0
    return -1


@njit(cache=True, nogil=True)
def _walk_kernel(indptr, indices, used, size, restart_prob, max_fruitless_steps, seed):
    """One RWR batch of ``size >= 1``; if no unused seed is left, ``batch[count:]`` is -1.

    Termination: every pass adds a node or is a fruitless step, and ``max(1,
    max_fruitless_steps)`` fruitless steps in a row force a re-seed that adds one (or fails),
    so the loop makes at most ``size * (max(1, max_fruitless_steps) + 1)`` passes.
    """
    np.random.seed(seed)
    batch = np.empty(size, dtype=np.int64)
    start = current = _random_unused(used)
    if start < 0:
        batch[:] = -1
        return batch, 0, 0, 0
    batch[0] = start
    count = 1
    fruitless = steps = restarts = reseeds = 0
    while count < size:
        u = np.random.random()
        steps += 1
        first, stop = indptr[current], indptr[current + 1]
        if u < restart_prob or first == stop:
            current = start
            restarts += 1
        else:
            # (u - alpha) / (1 - alpha) is uniform on [0, 1) given u >= alpha: one draw per step.
            offset = int((u - restart_prob) / (1.0 - restart_prob) * (stop - first))
            current = indices[first + min(offset, stop - first - 1)]
        if not used[current]:
            used[current] = True
            batch[count] = current
            count += 1
            fruitless = 0
        else:
            fruitless += 1
            if fruitless >= max_fruitless_steps:
                start = current = _random_unused(used)
                if start < 0:
                    batch[count:] = -1
                    break
                batch[count] = start
                count += 1
                fruitless = 0
                reseeds += 1
    return batch, steps, restarts, reseeds


@njit(cache=True, nogil=True)
def _neighborhood_kernel(indptr, indices, used, size, max_fruitless_steps, seed):
    """One kNN batch of ``size >= 1``; if no unused anchor is left, ``batch[count:]`` is -1.

    Termination: every pass takes an anchor (adds a node) or pops a frontier entry; a node
    enters the frontier at most once per search, so after at most ``N`` pops ``head == tail``
    forces a fresh anchor: at most ``size * (N + 1)`` passes.
    """
    np.random.seed(seed)
    batch = np.empty(size, dtype=np.int64)
    visited = np.zeros(used.size, dtype=np.bool_)
    frontier = np.empty(used.size, dtype=np.int64)
    anchor = _random_unused(used)
    if anchor < 0:
        batch[:] = -1
        return batch, 0, 0
    batch[0] = anchor
    count = 1
    frontier[0] = anchor
    visited[anchor] = True
    head, tail = 0, 1
    fruitless = steps = reseeds = 0
    while count < size:
        if head == tail or fruitless >= max_fruitless_steps:
            anchor = _random_unused(used)
            if anchor < 0:
                batch[count:] = -1
                break
            batch[count] = anchor
            count += 1
            # A fresh search: clear the marks of the previous one only.
            for i in range(tail):
                visited[frontier[i]] = False
            frontier[0] = anchor
            visited[anchor] = True
            head, tail, fruitless = 0, 1, 0
            reseeds += 1
            continue
        node = frontier[head]
        head += 1
        for e in range(indptr[node], indptr[node + 1]):
            if count == size:
                break
            neighbor = indices[e]
            steps += 1
            if visited[neighbor]:
                continue
            visited[neighbor] = True
            frontier[tail] = neighbor
            tail += 1
            if used[neighbor]:
                fruitless += 1
            else:
                used[neighbor] = True
                batch[count] = neighbor
                count += 1
                fruitless = 0
    return batch, steps, reseeds
