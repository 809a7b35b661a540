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

from .graph import ProximityGraph
from .walk import WalkStats

__all__ = ["take_random", "uniform_batch", "walk_batch", "neighborhood_batch"]


def take_random(used: np.ndarray, count: int, rng: np.random.Generator) -> list[int]:
    """Mark and return ``count`` distinct uniformly random unused instances.

    Raises:
        ValueError: if fewer than ``count`` instances are unused.
    """
    n = used.size
    picked: list[int] = []
    if count <= 0:
        return picked
    # Rejection sampling is O(count) while most instances are free; near the end of an epoch
    # it falls back to drawing from the explicit complement.
    draws = rng.integers(n, size=2 * count + 16)
    draws = draws[~used[draws]]
    _, first = np.unique(draws, return_index=True)
    chosen = draws[np.sort(first)][:count]
    if chosen.size < count:
        used[chosen] = True
        free = np.flatnonzero(~used)
        if free.size < count - chosen.size:
            raise ValueError(f"count must be <= the number of unused instances ({free.size + chosen.size})")
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
    """
    batch, steps, restarts, reseeds = _walk_kernel(
        graph.indptr, graph.indices, used, size, float(restart_prob), max_fruitless_steps, _kernel_seed(rng)
    )
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
    """
    batch, steps, reseeds = _neighborhood_kernel(
        graph.indptr, graph.indices, used, size, max_fruitless_steps, _kernel_seed(rng)
    )
    if stats is not None:
        stats.steps += steps
        stats.reseeds += reseeds
    return batch.tolist()


def _kernel_seed(rng: np.random.Generator) -> int:
    return int(rng.integers(2**31 - 1))


@njit(cache=True, nogil=True)
def _random_unused(used: np.ndarray) -> int:
    """A random unused instance (the caller guarantees one exists); marks it used."""
    n = used.size
    for _ in range(64):
        node = np.random.randint(0, n)
        if not used[node]:
            used[node] = True
            return node
    # Nearly everything is used: scan cyclically from a random start to the next free one.
    node = np.random.randint(0, n)
    while used[node]:
        node = node + 1 if node + 1 < n else 0
    used[node] = True
    return node


@njit(cache=True, nogil=True)
def _walk_kernel(indptr, indices, used, size, restart_prob, max_fruitless_steps, seed):
    np.random.seed(seed)
    batch = np.empty(size, dtype=np.int64)
    start = current = _random_unused(used)
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
                batch[count] = start
                count += 1
                fruitless = 0
                reseeds += 1
    return batch, steps, restarts, reseeds


@njit(cache=True, nogil=True)
def _neighborhood_kernel(indptr, indices, used, size, max_fruitless_steps, seed):
    np.random.seed(seed)
    batch = np.empty(size, dtype=np.int64)
    visited = np.zeros(used.size, dtype=np.bool_)
    frontier = np.empty(used.size, dtype=np.int64)
    anchor = _random_unused(used)
    batch[0] = anchor
    count = 1
    frontier[0] = anchor
    visited[anchor] = True
    head, tail = 0, 1
    fruitless = steps = reseeds = 0
    while count < size:
        if head == tail or fruitless >= max_fruitless_steps:
            anchor = _random_unused(used)
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
