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

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from .graph import ProximityGraph

__all__ = ["WalkStats", "num_batches", "random_walk_batches", "neighborhood_batches"]

# Random numbers are drawn in chunks: one Generator call per step would dominate the walk.
_CHUNK = 8192


@dataclass
class WalkStats:
    """Counters of one epoch of walking (reset by the caller)."""

    steps: int = 0
    """Moves made (restarts included)."""
    restarts: int = 0
    """Moves that returned to the seed."""
    reseeds: int = 0
    """Times a batch started again from a fresh random seed after fruitless steps."""


def num_batches(num_instances: int, batch_size: int, drop_last: bool) -> int:
    """Batches per epoch: ``N // B`` with ``drop_last``, else ``ceil(N / B)``."""
    if drop_last:
        return num_instances // batch_size
    return -(-num_instances // batch_size)


# A "fill" function grows one batch in place to ``target`` nodes:
# fill(batch, is_used, seed, fresh_seed, target), where fresh_seed() marks, appends and
# returns a new random available node.
_Fill = Callable[[list, bytearray, int, Callable[[], int], int], None]


def _epoch(
    num_nodes: int,
    batch_size: int,
    rng: np.random.Generator,
    fill: _Fill,
    *,
    replacement: bool,
    drop_last: bool,
) -> Iterator[list[int]]:
    total = num_batches(num_nodes, batch_size, drop_last)
    if replacement:
        for _ in range(total):
            in_batch = bytearray(num_nodes)
            batch: list[int] = []

            def fresh_seed() -> int:
                return _random_unused(rng, in_batch, num_nodes, batch)

            fill(batch, in_batch, fresh_seed(), fresh_seed, batch_size)
            yield batch
        return

    used = bytearray(num_nodes)
    # Seeds are taken in the order of one permutation, skipping used nodes: O(N) per epoch.
    seed_order = rng.permutation(num_nodes).tolist()
    cursor = 0
    remaining = num_nodes

    def next_unused() -> int:
        nonlocal cursor
        while used[seed_order[cursor]]:
            cursor += 1
        node = seed_order[cursor]
        used[node] = 1
        return node

    for _ in range(total):
        batch = []
        target = min(batch_size, remaining)

        def fresh_seed() -> int:
            node = next_unused()
            batch.append(node)
            return node

        fill(batch, used, fresh_seed(), fresh_seed, target)
        remaining -= len(batch)
        yield batch


def _random_unused(rng: np.random.Generator, in_batch: bytearray, n: int, batch: list[int]) -> int:
    """Mark and return a uniformly random node not yet in ``batch``."""
    for _ in range(32):
        node = int(rng.integers(n))
        if not in_batch[node]:
            break
    else:  # the batch covers most nodes: draw from the complement directly
        free = np.flatnonzero(np.frombuffer(bytes(in_batch), dtype=np.uint8) == 0)
        node = int(free[rng.integers(free.size)])
    in_batch[node] = 1
    batch.append(node)
    return node


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
) -> Iterator[list[int]]:
    """Yield one epoch of RWR batches (lists of distinct node ids).

    Args:
        graph: the proximity graph; nodes without out-edges act as dead ends (restart).
        batch_size: ``B``, at most ``graph.num_nodes``.
        restart_prob: alpha in ``[0, 1]``.
        rng: the only source of randomness.
        replacement: see the module docstring.
        drop_last: drop the last, smaller batch (exactly-once mode only; with replacement
            every batch is full and ``drop_last`` only sets the count).
        max_fruitless_steps: consecutive steps without a new node before re-seeding.
        stats: optional counters to accumulate into.

    Yields:
        ``ceil(N / B)`` (or ``N // B`` with ``drop_last``) lists of ints.
    """
    stats = stats if stats is not None else WalkStats()
    indptr = graph.indptr.tolist()
    indices = graph.indices.tolist()
    uniforms: list[float] = []
    cursor = len(uniforms)

    def fill(
        batch: list[int], is_used: bytearray, seed: int, fresh_seed: Callable[[], int], target: int
    ) -> None:
        nonlocal uniforms, cursor
        current, fruitless = seed, 0
        steps = restarts = 0
        while len(batch) < target:
            if cursor == len(uniforms):
                uniforms, cursor = rng.random(_CHUNK).tolist(), 0
            u = uniforms[cursor]
            cursor += 1
            steps += 1
            start, stop = indptr[current], indptr[current + 1]
            if u < restart_prob or start == stop:
                current = seed
                restarts += 1
            else:
                # Re-use the same uniform for the neighbour choice: (u - alpha) / (1 - alpha)
                # is uniform on [0, 1) given u >= alpha.
                offset = int((u - restart_prob) / (1.0 - restart_prob) * (stop - start))
                current = indices[start + min(offset, stop - start - 1)]
            if not is_used[current]:
                is_used[current] = 1
                batch.append(current)
                fruitless = 0
            else:
                fruitless += 1
                if fruitless >= max_fruitless_steps:
                    seed = current = fresh_seed()
                    fruitless = 0
                    stats.reseeds += 1
        stats.steps += steps
        stats.restarts += restarts

    yield from _epoch(graph.num_nodes, batch_size, rng, fill, replacement=replacement, drop_last=drop_last)


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
    stats = stats if stats is not None else WalkStats()
    indptr = graph.indptr.tolist()
    indices = graph.indices.tolist()

    def fill(
        batch: list[int], is_used: bytearray, seed: int, fresh_seed: Callable[[], int], target: int
    ) -> None:
        frontier = [seed]
        visited = {seed}
        head = fruitless = 0
        while len(batch) < target:
            if head == len(frontier) or fruitless >= max_fruitless_steps:
                seed = fresh_seed()
                frontier, visited, head, fruitless = [seed], {seed}, 0, 0
                stats.reseeds += 1
                continue
            node = frontier[head]
            head += 1
            for neighbor in indices[indptr[node] : indptr[node + 1]]:
                if len(batch) == target:
                    break
                stats.steps += 1
                if neighbor in visited:
                    continue
                visited.add(neighbor)
                frontier.append(neighbor)
                if is_used[neighbor]:
                    fruitless += 1
                else:
                    is_used[neighbor] = 1
                    batch.append(neighbor)
                    fruitless = 0

    yield from _epoch(graph.num_nodes, batch_size, rng, fill, replacement=replacement, drop_last=drop_last)
