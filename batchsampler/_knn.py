"""Neighbour-row builders behind :meth:`ProximityGraph.build`: random candidates and exact kNN.

Both write rows of a regular graph, ``[rows, k]`` int32 neighbours sorted by decreasing cosine
similarity and their float32 scores, for a chosen subset of *blocks* of rows, so that a shard
of a distributed job computes only its own blocks (see :func:`batchsampler.graph.build_neighbor_rows`).

Random candidates: all randomness is drawn up front into a :class:`RandomPlan` (anchor order,
the candidate ids of every block, the masked column of every anchor). A plan costs a few
permutations of ``range(N)``, so every shard draws the same plan and computes a disjoint set
of blocks; each block's matrix product and selection depend on that block alone, so the union
of the shards is bit-identical to a single-process build.

The approximate FAISS backends live in :mod:`batchsampler._faiss_knn`.
"""

from __future__ import annotations

import statistics
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from . import _select

_BLOCK_FLOATS = 1 << 22  # similarities per anchor block (16 MB): bounds the default block size
EXACT_TILE = 2048  # rows (and columns) of one exact-kNN similarity tile


def default_block_size(m: int) -> int:
    """Anchors per block: ``m + 1`` (each node is a candidate of about one block of anchors),
    fewer when ``m`` is so large that a ``[block, m + 1]`` similarity block would exceed 16 MB."""
    return max(1, min(m + 1, max(64, _BLOCK_FLOATS // (m + 1))))


# ---------------------------------------------------------------------- random candidates


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


@dataclass
class RandomPlan:
    """Every random draw of a random-candidate build.

    Attributes:
        anchors: int64 ``[N]``; block ``i`` scores anchors ``anchors[i * B:(i + 1) * B]``.
        candidates: int64 ``[num_blocks, m + 1]`` distinct candidate ids of every block.
        masked: int64 ``[N]``; the candidate column each anchor slot ignores: itself when it
            is among the block's candidates, else one uniformly random surplus column, so
            every anchor scores a uniform draw of exactly ``m`` other nodes.
        block_size: ``B``.
    """

    anchors: np.ndarray
    candidates: np.ndarray
    masked: np.ndarray
    block_size: int

    @property
    def num_blocks(self) -> int:
        return self.candidates.shape[0]

    def block_rows(self, block: int) -> slice:
        """Slots of ``anchors`` scored by ``block``."""
        return slice(block * self.block_size, min((block + 1) * self.block_size, self.anchors.size))


def plan_random(n: int, m: int, rng: np.random.Generator, block_size: int) -> RandomPlan:
    """Draw the anchor order, every block's ``m + 1`` candidates and the masked columns."""
    block_size = min(block_size, m + 1)
    anchors = rng.permutation(n)
    num_blocks = -(-n // block_size)
    stream = _CandidateStream(n, rng)
    candidates = np.empty((num_blocks, m + 1), dtype=np.int64)
    for block in range(num_blocks):
        candidates[block] = stream.take(m + 1)
    surplus = rng.integers(m + 1, size=n)
    masked = _select.self_columns(anchors, candidates, block_size, surplus, n)
    return RandomPlan(anchors, candidates, masked, block_size)


def _selection_cap(k: int, width: int) -> int:
    """Entries kept before the final sort: a window above ``k`` wide enough to find quickly."""
    cap = k + max(16, k // 4)
    return width if cap >= width - 1 else cap


def inverse_norms(x: np.ndarray) -> np.ndarray:
    """float32 ``[N]`` ``1 / |x_i|`` (zero rows: a huge finite value, so their cosines are 0)."""
    squares = np.einsum("ij,ij->i", x, x, dtype=np.float64)  # no [N, d] temporary
    return (1.0 / np.maximum(np.sqrt(squares), np.finfo(np.float32).tiny)).astype(np.float32)


def random_rows(
    x: np.ndarray,
    inv_norms: np.ndarray,
    k: int,
    plan: RandomPlan,
    blocks: Sequence[int],
    neighbors: np.ndarray,
    scores: np.ndarray | None,
    out_rows: np.ndarray,
    *,
    workers: int = 1,
    show_progress: bool = False,
) -> None:
    """Score ``blocks`` of ``plan`` and write their top ``k`` rows.

    Blocks are independent tasks handed to ``workers`` threads, each running the whole
    pipeline (gather, single-threaded GEMM, selection, sort) on its own buffers: unlike
    splitting each GEMM across threads, a core slowed by another process only delays its
    own blocks, and every block is computed the same way whichever thread runs it.

    Args:
        x: float32 ``[N, d]`` embeddings, C-contiguous, any scale: products are turned into
            cosines with ``inv_norms`` inside the selection pass, which saves a normalised
            ``[N, d]`` copy (fresh memory is the slowest thing a large build touches).
        inv_norms: float32 ``[N]`` from :func:`inverse_norms`.
        k: neighbours per node.
        plan: the draws (see :func:`plan_random`).
        blocks: block numbers to compute.
        neighbors: int32 ``[R, k]`` output; row ``out_rows[s]`` receives anchor slot ``s``.
        scores: float32 ``[R, k]`` output, or ``None`` not to keep scores.
        out_rows: int64 ``[N]`` output row of every anchor slot (only the slots of ``blocks``
            are read).
        workers: threads (BLAS should be limited to one thread meanwhile).
    """
    width = plan.candidates.shape[1]
    cap = _selection_cap(k, width)
    # First threshold guess: the normal quantile that leaves the middle of [k, cap] above it.
    share = min(max((k + cap) / 2 / width, 1e-6), 1 - 1e-6)
    z = statistics.NormalDist().inv_cdf(1.0 - share)
    score_bits = np.empty((0, k), np.int32) if scores is None else scores.view(np.int32)
    dim = x.shape[1]
    local = threading.local()

    def run(block: int) -> None:
        if not hasattr(local, "buffers"):  # per-thread buffers, reused by all its blocks
            local.buffers = (
                np.empty((plan.block_size, dim), np.float32),
                np.empty((width, dim), np.float32),
                np.empty((plan.block_size, width), np.float32),
                np.empty((plan.block_size, cap + 1), np.int64),
            )
        anchor_buffer, candidates, sims_buffer, keys_buffer = local.buffers
        slots = plan.block_rows(block)
        size = slots.stop - slots.start
        anchor_ids = plan.anchors[slots]
        candidate_ids = plan.candidates[block : block + 1]
        anchors = np.take(x, anchor_ids, axis=0, out=anchor_buffer[:size])
        np.take(x, candidate_ids[0], axis=0, out=candidates)
        sims = np.matmul(anchors, candidates.T, out=sims_buffer[:size])
        keys = keys_buffer[:size]
        _select.threshold_keys(sims, plan.masked[slots], inv_norms[anchor_ids], inv_norms[candidate_ids], k, z, keys)
        keys.sort(axis=1)
        _select.decode_keys(keys, candidate_ids, k, out_rows[slots], neighbors, score_bits)

    _run_tasks(run, list(blocks), workers, "proximity graph", show_progress)


def _run_tasks(run, tasks: list, workers: int, desc: str, show_progress: bool) -> None:
    """``run(task)`` for every task on ``workers`` threads (in order when ``workers == 1``)."""
    with tqdm(total=len(tasks), desc=desc, unit="block", disable=not show_progress) as bar:
        if workers <= 1 or len(tasks) <= 1:
            for task in tasks:
                run(task)
                bar.update()
            return
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for _ in pool.map(run, tasks):  # re-raises a worker's exception here
                bar.update()


# ---------------------------------------------------------------------- exact kNN


def round_robin_rounds(num_tiles: int) -> list[list[tuple[int, int]]]:
    """Off-diagonal tile pairs ``(i, j)``, ``i < j``, grouped in rounds of disjoint pairs.

    The circle method of round-robin tournaments: within a round no tile appears twice, so
    its pairs update disjoint heaps and run concurrently without locks.
    """
    players = list(range(num_tiles)) + ([-1] if num_tiles % 2 else [])
    count = len(players)
    rounds = []
    for _ in range(count - 1):
        pairs = [(players[i], players[count - 1 - i]) for i in range(count // 2)]
        rounds.append([(min(a, b), max(a, b)) for a, b in pairs if a >= 0 and b >= 0])
        players = [players[0], players[-1], *players[1:-1]]
    return rounds


def exact_rows(
    x: np.ndarray,
    k: int,
    tiles: Sequence[int] | None = None,
    *,
    tile: int = EXACT_TILE,
    workers: int = 1,
    show_progress: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact cosine kNN (self excluded) by blocked matrix products and per-node heaps.

    Args:
        x: float32 ``[N, d]`` unit rows, C-contiguous.
        k: neighbours per node, ``k < N``.
        tiles: row tiles (of ``tile`` rows) to compute; ``None``: all, using the symmetry of
            the similarity matrix (each off-diagonal tile serves its rows and its columns:
            half the products). A subset is computed against all columns.
        tile: rows per tile.
        workers: threads (BLAS should be limited to one thread meanwhile).

    Returns:
        ``(rows, neighbors, scores)``: int64 ``[R]`` node ids, int32 ``[R, k]`` neighbours by
        decreasing similarity (ties by increasing id), float32 ``[R, k]`` similarities.
    """
    n = x.shape[0]
    tile = max(1, min(tile, n))
    num_tiles = -(-n // tile)
    symmetric = tiles is None
    tiles = list(range(num_tiles)) if tiles is None else list(tiles)
    heap_values = np.full((n, k), -np.inf, dtype=np.float32)
    heap_ids = np.full((n, k), -1, dtype=np.int64)
    local = threading.local()

    def product(i: int, j: int) -> tuple[np.ndarray, int, int]:
        if not hasattr(local, "buffer"):
            local.buffer = np.empty(tile * tile, np.float32)
        r0, r1, c0, c1 = i * tile, min(n, (i + 1) * tile), j * tile, min(n, (j + 1) * tile)
        sims = local.buffer[: (r1 - r0) * (c1 - c0)].reshape(r1 - r0, c1 - c0)
        return np.matmul(x[r0:r1], x[c0:c1].T, out=sims), r0, c0

    def pair(task: tuple[int, int]) -> None:
        sims, r0, c0 = product(*task)
        _select.heap_update_rows(sims, r0, c0, heap_values, heap_ids)
        if task[0] != task[1]:
            _select.heap_update_cols(sims, r0, c0, heap_values, heap_ids)

    def row_tile(i: int) -> None:  # a shard's tile against every column tile
        for j in range(num_tiles):
            sims, r0, c0 = product(i, j)
            _select.heap_update_rows(sims, r0, c0, heap_values, heap_ids)

    if symmetric:
        rounds = [[(i, i) for i in range(num_tiles)], *round_robin_rounds(num_tiles)]
        with tqdm(total=sum(map(len, rounds)), desc="exact kNN", unit="tile", disable=not show_progress) as bar:
            for tasks in rounds:  # a barrier between rounds keeps heap updates race-free
                _run_tasks(pair, tasks, workers, "", False)
                bar.update(len(tasks))
    else:
        _run_tasks(row_tile, tiles, workers, "exact kNN", show_progress)
    rows = np.concatenate([np.arange(t * tile, min(n, (t + 1) * tile)) for t in tiles] or [np.zeros(0, np.int64)])
    keys = np.empty((rows.size, k), dtype=np.int64)
    _select.heaps_to_keys(heap_values[rows], heap_ids[rows], keys)
    keys.sort(axis=1)
    keys = np.ascontiguousarray(keys[:, ::-1])
    neighbors = (0xFFFFFFFF - (keys & 0xFFFFFFFF)).astype(np.int32)
    return rows, neighbors, key_values(keys)


def key_values(keys: np.ndarray) -> np.ndarray:
    """The float32 similarities packed in the high 32 bits of sortable keys."""
    bits = (keys >> 32).astype(np.int32)
    bits = np.where(bits < 0, bits ^ np.int32(0x7FFFFFFF), bits)
    return bits.view(np.float32)
