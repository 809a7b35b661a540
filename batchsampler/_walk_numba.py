"""Compiled epoch kernels for :mod:`batchsampler.walk` (numba, ``cache=True``).

Each kernel computes a whole epoch into one int64 array ``order``: batch ``b`` is
``order[b * B : b * B + sizes[b]]``. All randomness is drawn from the NumPy ``Generator``
passed in (numba advances the caller's generator itself), and the kernels are sequential, so
an epoch is a deterministic function of the graph and the generator state.

Why walkers in lock-step: a walk step is a chain of dependent memory loads (the current node's
row of the CSR arrays, then the visited flag of the neighbour), each a cache miss at
N = 1e6. Advancing ``W`` walkers (each filling its own batch) round-robin gives the CPU ``W``
independent chains to overlap, instead of waiting for one miss at a time.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._prefetch import prefetch_read

# counters[...] slots, mirrored by WalkStats
STEPS, RESTARTS, RESEEDS = 0, 1, 2

_RANDOM_CHUNK = 4096  # uniforms drawn per Generator call (one call per step costs ~7 ns)


@njit(inline="always")
def _next_slot(indptr, regular_k, current, u, restart_prob):
    """Where the move after ``current`` reads its neighbour: an index into ``indices``, or -1
    to restart at the seed (probability alpha, or a node without out-edges)."""
    if regular_k > 0:  # regular graph: no indptr load on the critical path
        start = current * regular_k
        degree = regular_k
    else:
        start = indptr[current]
        degree = indptr[current + 1] - start
    if u < restart_prob or degree == 0:
        return np.int64(-1)
    # The same uniform picks the neighbour: (u - alpha) / (1 - alpha) is uniform on [0, 1).
    offset = np.int64((u - restart_prob) / (1.0 - restart_prob) * degree)
    return np.int64(start + min(offset, degree - 1))


@njit(inline="always")
def _take_seed(used, seed_order, cursor, rng):
    """Mark and return an unused node, and the new cursor; the node is -1 if none is unused
    (nothing is marked then).

    With a ``seed_order`` permutation: its next unused node. Without (empty array): a uniformly
    random unused node (rejection sampling; near the end, a cyclic scan from a random start).

    Bounds: the cursor only moves forward and stops at ``seed_order.size`` (over a whole
    kernel call it moves at most N times); rejection makes at most 64 draws; the cyclic scan
    visits each of the ``n`` nodes at most once.
    """
    if seed_order.size:
        while cursor < seed_order.size and used[seed_order[cursor]]:
            cursor += 1
        if cursor == seed_order.size:
            return np.int64(-1), cursor
        node = seed_order[cursor]
    else:
        n = used.size
        node = min(np.int64(rng.random() * n), n - 1)
        tries = 0
        while used[node] and tries < 64:
            node = min(np.int64(rng.random() * n), n - 1)
            tries += 1
        scanned = 0
        while used[node] and scanned < n:
            node = node + 1 if node + 1 < n else 0
            scanned += 1
        if used[node]:
            return np.int64(-1), cursor
    used[node] = 1
    return np.int64(node), cursor


@njit(inline="always")
def _cosine(vectors, a, b):
    """Cosine similarity of rows ``a`` and ``b`` of ``vectors`` (0 if either row is zero)."""
    dot = 0.0
    norm_a = 0.0
    norm_b = 0.0
    for j in range(vectors.shape[1]):
        x = np.float64(vectors[a, j])
        y = np.float64(vectors[b, j])
        dot += x * y
        norm_a += x * x
        norm_b += y * y
    if norm_a == 0.0 or norm_b == 0.0:
        return 0.0
    return dot / np.sqrt(norm_a * norm_b)


@njit(inline="always")
def _nearest_unused(used, free, vectors, anchor, candidates, rng):
    """The unused node most similar to ``anchor`` among ``candidates`` random unused ones, or -1.

    Candidates are drawn uniformly from ``free`` (node ids, a superset of the unused nodes; an
    empty array means all ``N`` nodes) and rejected when used. Nothing is marked.

    Bounds: at most 64 draws per candidate, ``candidates * 64`` in all, each followed by one
    ``d``-long dot product when it is unused; -1 when every draw hit a used node.
    """
    pool = free.size if free.size else used.size
    best = np.int64(-1)
    best_similarity = -np.inf
    for _ in range(candidates):
        for _ in range(64):
            position = min(np.int64(rng.random() * pool), pool - 1)
            node = free[position] if free.size else position
            if not used[node]:
                similarity = _cosine(vectors, anchor, node)
                if similarity > best_similarity:
                    best_similarity = similarity
                    best = node
                break
    return best


@njit(cache=True, nogil=True)
def rwr_exactly_once(
    indptr, indices, regular_k, restart_prob, batch_size, sizes, max_fruitless, num_walkers, seed_order, rng, order,
    counters, used, vectors, free, reseed_candidates,
):
    """Exactly-once RWR batches (an epoch, or a group of one) with walkers in lock-step.

    Each walker prepares its next move at the end of its turn (draws the uniform, computes
    the slot of ``indices`` it will read) and prefetches that slot, so the load has the other
    walkers' turns to arrive.

    Args:
        indptr, indices: the graph's CSR arrays.
        regular_k: the out-degree if every node has it (``indptr`` is then not read), else 0.
        restart_prob: alpha.
        batch_size: ``B``; batch ``b`` is written to ``order[b * B:]``.
        sizes: int64 ``[batches]`` target size of every batch (sum at most N).
        max_fruitless: consecutive steps without a new node before re-seeding.
        num_walkers: batches grown at the same time.
        seed_order: int64 ``[N]`` permutation whose unused nodes are the seeds in order, or an
            empty array for uniformly random unused seeds.
        rng: ``numpy.random.Generator``.
        order: int64 output (see the module docstring).
        counters: int64 ``[3]`` steps, restarts, reseeds (accumulated).
        used: bool or uint8 ``[N]``, nonzero for unavailable nodes; taken nodes are marked.
            At least ``sizes.sum()`` nodes must be unused.
        vectors: float ``[N, d]`` embeddings for guided re-seeds (a ``[0, 0]`` array without).
        free: int64 node ids that include every unused node (drawn from by guided re-seeds), or
            an empty array for all nodes.
        reseed_candidates: ``c``; 0: a stalled walker re-seeds at a random unused node (as a new
            batch does). ``c > 0``: at the unused node most similar to its batch's first seed
            among ``c`` random unused ones (random if none of the draws is unused), so that
            batches completed from the epoch's leftovers stay near their seed.

    Returns:
        0, or -1 if a seed was needed while no node was unused (fewer unused nodes than
        ``sizes.sum()``); the output is then incomplete and the caller must raise.

    Termination: every turn of a walker either adds a node to its batch or is a fruitless
    step, and after ``max(1, max_fruitless)`` fruitless steps in a row the walker re-seeds,
    which adds a node (or fails with -1). So the loop makes at most
    ``(sizes.sum() + 1) * (max(1, max_fruitless) + 1) + sizes.size + walkers`` walker turns
    (additions, fruitless steps, batch starts, retirements), whatever the graph; a guided
    re-seed adds at most ``64 * reseed_candidates`` draws to its turn.
    """
    total = sizes.size
    walkers = min(num_walkers, total)
    batch = np.full(walkers, -1, np.int64)
    target = np.zeros(walkers, np.int64)
    filled = np.zeros(walkers, np.int64)
    seed = np.zeros(walkers, np.int64)
    anchor = np.zeros(walkers, np.int64)  # the batch's first seed: guided re-seeds stay near it
    pending = np.full(walkers, -1, np.int64)  # slot of the next move, -1: back to the seed
    fruitless = np.zeros(walkers, np.int64)
    uniforms = rng.random(_RANDOM_CHUNK)
    drawn = 0
    cursor = 0
    next_batch = 0
    active = walkers
    steps = restarts = reseeds = 0
    while active > 0:
        for w in range(walkers):
            if batch[w] >= 0 and filled[w] < target[w]:
                slot = pending[w]
                steps += 1
                if slot < 0:
                    node = seed[w]
                    restarts += 1
                else:
                    node = np.int64(indices[slot])
                current = node
                if not used[node]:
                    used[node] = 1
                    order[batch[w] * batch_size + filled[w]] = node
                    filled[w] += 1
                    fruitless[w] = 0
                else:
                    fruitless[w] += 1
                    if fruitless[w] >= max_fruitless:
                        reseeds += 1
                        current = -1  # re-seed below
            elif batch[w] >= 0 or next_batch < total:
                # Batch full (or not started): take the next batch number, or retire.
                if next_batch == total:
                    batch[w] = -1
                    active -= 1
                    continue
                batch[w] = next_batch
                target[w] = sizes[next_batch]
                next_batch += 1
                filled[w] = 0
                current = -1
            else:
                continue
            if current < 0:
                # (Re-)seed at an unused node. One exists when the caller's precondition holds
                # (the unused nodes outnumber the places left in the batches not yet full).
                if filled[w] > 0 and reseed_candidates > 0:
                    current = _nearest_unused(used, free, vectors, anchor[w], reseed_candidates, rng)
                    if current >= 0:
                        used[current] = 1
                if current < 0:
                    current, cursor = _take_seed(used, seed_order, cursor, rng)
                if current < 0:
                    counters[STEPS] += steps
                    counters[RESTARTS] += restarts
                    counters[RESEEDS] += reseeds
                    return np.int64(-1)
                if filled[w] == 0:
                    anchor[w] = current
                order[batch[w] * batch_size + filled[w]] = current
                filled[w] += 1
                seed[w] = current
                fruitless[w] = 0
            if drawn == _RANDOM_CHUNK:
                uniforms = rng.random(_RANDOM_CHUNK)
                drawn = 0
            slot = _next_slot(indptr, regular_k, current, uniforms[drawn], restart_prob)
            drawn += 1
            pending[w] = slot
            if slot >= 0:
                prefetch_read(indices, slot)
    counters[STEPS] += steps
    counters[RESTARTS] += restarts
    counters[RESEEDS] += reseeds
    return np.int64(0)


@njit(inline="always")
def _random_outside(rng, member, stamp, n):
    """A uniformly random node with ``member[node] != stamp``, or -1 if there is none.

    Bounded: 64 draws, then two passes over the ``n`` nodes.
    """
    for _ in range(64):
        node = min(np.int64(rng.random() * n), n - 1)
        if member[node] != stamp:
            return node
    # The batch covers most nodes: draw among the complement directly.
    outside = 0
    for node in range(n):
        outside += member[node] != stamp
    if outside == 0:
        return np.int64(-1)
    index = min(np.int64(rng.random() * outside), outside - 1)
    for node in range(n):
        if member[node] != stamp:
            if index == 0:
                return np.int64(node)
            index -= 1
    return np.int64(-1)  # unreachable: index < outside


@njit(cache=True, nogil=True)
def rwr_replacement(indptr, indices, regular_k, n, restart_prob, batch_size, total, max_fruitless, rng, order, counters):
    """``total`` independent RWR batches of ``batch_size`` distinct nodes from random seeds.

    Returns 0, or -1 if a seed was needed while every node was in the batch
    (``batch_size > n``); the caller must raise.

    Termination: each pass of the inner loop adds a node or is a fruitless step, and
    ``max(1, max_fruitless)`` fruitless steps in a row force a re-seed that adds one, so a
    batch takes at most ``batch_size * (max(1, max_fruitless) + 1)`` passes.
    """
    member = np.zeros(n, np.int64)  # member[node] == b + 1: node is in batch b
    steps = restarts = reseeds = 0
    for b in range(total):
        stamp = b + 1
        base = b * batch_size
        seed = _random_outside(rng, member, stamp, n)
        if seed < 0:
            return np.int64(-1)
        member[seed] = stamp
        order[base] = seed
        filled = 1
        current = seed
        fruitless = 0
        while filled < batch_size:
            slot = _next_slot(indptr, regular_k, current, rng.random(), restart_prob)
            steps += 1
            if slot < 0:
                current = seed
                restarts += 1
            else:
                current = np.int64(indices[slot])
            if member[current] != stamp:
                member[current] = stamp
                order[base + filled] = current
                filled += 1
                fruitless = 0
                continue
            fruitless += 1
            if fruitless >= max_fruitless:
                reseeds += 1
                seed = current = _random_outside(rng, member, stamp, n)
                if seed < 0:
                    return np.int64(-1)
                member[seed] = stamp
                order[base + filled] = seed
                filled += 1
                fruitless = 0
    counters[STEPS] += steps
    counters[RESTARTS] += restarts
    counters[RESEEDS] += reseeds
    return np.int64(0)


@njit(cache=True, nogil=True)
def bfs_epoch(
    indptr, indices, n, batch_size, sizes, max_fruitless, replacement, seed_order, rng, order, counters
):
    """kNN batches: an anchor and its nearest available neighbours, breadth-first in rank order.

    Exactly-once mode (``replacement`` False) takes anchors from ``seed_order`` skipping used
    nodes; replacement mode draws each anchor uniformly among nodes not in the batch.

    Returns 0, or -1 if an anchor was needed while no node was available (``sizes.sum() > n``
    exactly once, ``batch_size > n`` with replacement); the caller must raise.

    Termination: every pass of the ``while`` loop either takes an anchor (adds a node) or
    pops one frontier entry. A node enters the frontier at most once per search (visit
    stamp), so a search pops at most ``n`` entries before ``head == tail`` forces a fresh
    anchor: a batch takes at most ``target * (n + 1)`` passes. The anchor cursor only moves
    forward, at most ``n`` times in the whole call.
    """
    used = np.zeros(n, np.int64)  # exactly-once: 1 when used; replacement: batch stamp
    visited = np.zeros(n, np.int64)  # visit stamp of the current frontier
    frontier = np.empty(n, np.int64)
    visit = 0
    cursor = 0
    steps = reseeds = 0
    for b in range(sizes.size):
        stamp = b + 1 if replacement else 1
        base = b * batch_size
        target = sizes[b]
        filled = 0
        head = tail = 0
        fruitless = 0
        while filled < target:
            if filled == 0 or head == tail or fruitless >= max_fruitless:
                if filled > 0:
                    reseeds += 1
                if replacement:
                    anchor = _random_outside(rng, used, stamp, n)
                else:
                    while cursor < seed_order.size and used[seed_order[cursor]] == stamp:
                        cursor += 1
                    anchor = seed_order[cursor] if cursor < seed_order.size else -1
                if anchor < 0:
                    counters[STEPS] += steps
                    counters[RESEEDS] += reseeds
                    return np.int64(-1)
                used[anchor] = stamp
                order[base + filled] = anchor
                filled += 1
                visit += 1
                visited[anchor] = visit
                frontier[0] = anchor
                head, tail, fruitless = 0, 1, 0
                continue
            node = frontier[head]
            head += 1
            for e in range(indptr[node], indptr[node + 1]):
                if filled == target:
                    break
                steps += 1
                neighbor = indices[e]
                if visited[neighbor] == visit:
                    continue
                visited[neighbor] = visit
                frontier[tail] = neighbor
                tail += 1
                if used[neighbor] == stamp:
                    fruitless += 1
                else:
                    used[neighbor] = stamp
                    order[base + filled] = neighbor
                    filled += 1
                    fruitless = 0
    counters[STEPS] += steps
    counters[RESEEDS] += reseeds
    return np.int64(0)
