"""Collect one batch of available instances: uniformly, by random walk, or by neighbourhood.

Every function here grows one batch from a ``used`` mask (bool ``[N]``, True for instances
not available) and a :class:`numpy.random.Generator`, and marks what it takes. A sampler's
epoch is a sequence of such calls, batch ``i`` drawing from its own generator seeded by
``(seed, epoch, i)``; batch ``i`` is therefore a pure function of the seed, the epoch, ``i``,
the graph in use and the instances used before it. That is what makes epochs reproducible
across ranks and resumable mid-epoch, and lets a new graph take over between two batches.
"""

from __future__ import annotations

import numpy as np

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
    indptr, indices = graph.indptr, graph.indices
    batch = take_random(used, 1, rng)
    seed = current = batch[0]
    fruitless = steps = restarts = reseeds = 0
    uniforms = rng.random(4 * size + 64)
    cursor = 0
    while len(batch) < size:
        if cursor == uniforms.size:
            uniforms, cursor = rng.random(uniforms.size), 0
        u = uniforms[cursor]
        cursor += 1
        steps += 1
        start, stop = indptr[current], indptr[current + 1]
        if u < restart_prob or start == stop:
            current = seed
            restarts += 1
        else:
            # (u - alpha) / (1 - alpha) is uniform on [0, 1) given u >= alpha: one draw per step.
            offset = int((u - restart_prob) / (1.0 - restart_prob) * (stop - start))
            current = int(indices[start + min(offset, stop - start - 1)])
        if not used[current]:
            used[current] = True
            batch.append(current)
            fruitless = 0
        else:
            fruitless += 1
            if fruitless >= max_fruitless_steps:
                seed = current = take_random(used, 1, rng)[0]
                batch.append(seed)
                fruitless = 0
                reseeds += 1
    if stats is not None:
        stats.steps += steps
        stats.restarts += restarts
        stats.reseeds += reseeds
    return batch


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
    indptr, indices = graph.indptr, graph.indices
    batch = take_random(used, 1, rng)
    frontier = [batch[0]]
    visited = {batch[0]}
    head = fruitless = steps = reseeds = 0
    while len(batch) < size:
        if head == len(frontier) or fruitless >= max_fruitless_steps:
            anchor = take_random(used, 1, rng)[0]
            batch.append(anchor)
            frontier, visited, head, fruitless = [anchor], {anchor}, 0, 0
            reseeds += 1
            continue
        node = frontier[head]
        head += 1
        for neighbor in indices[indptr[node] : indptr[node + 1]].tolist():
            if len(batch) == size:
                break
            steps += 1
            if neighbor in visited:
                continue
            visited.add(neighbor)
            frontier.append(neighbor)
            if used[neighbor]:
                fruitless += 1
            else:
                used[neighbor] = True
                batch.append(neighbor)
                fruitless = 0
    if stats is not None:
        stats.steps += steps
        stats.reseeds += reseeds
    return batch
