"""Compiled top-k selection kernels for graph construction (numba).

Two problems, one per construction:

* **Random candidates** (:func:`threshold_keys`): every row of a ``[rows, m + 1]`` similarity
  block needs its ``k`` largest entries, sorted. A full sort costs ~50 us per row; instead a
  threshold with between ``k`` and ``cap`` entries above it is found by a few vectorised
  counting passes, those entries are packed into sortable int64 keys
  ``(order-preserving value bits << 32) | column`` and NumPy's SIMD sort orders the short rows.
* **Exact kNN** (:func:`heap_update_rows`, :func:`heap_update_cols`): tiles of the all-pairs
  similarity matrix stream through per-node min-heaps of size ``k``. Most tile entries fall
  below the node's current k-th best; a vectorised chunk maximum rejects them without touching
  the heap. Each off-diagonal tile serves both its rows and its columns (similarity is
  symmetric), which halves the matrix products.

All kernels are ``cache=True`` so the compile cost (seconds) is paid once per installation.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._prefetch import prefetch_write

KEY_PAD = np.iinfo(np.int64).min
"""Key of an empty slot: sorts before every real key."""

_CHUNK = 32  # columns whose maximum is checked before any heap work
_WRITE_AHEAD = 16  # rows between a result row's prefetch and its write


@njit(inline="always")
def _ordered(bits: np.int32) -> np.int64:
    """Map float32 bits to an int whose order is the float order (-0.0 just below +0.0)."""
    b = np.int64(bits)
    if b < 0:
        b = b ^ 0x7FFFFFFF
    return b


@njit(fastmath={"reassoc", "nsz", "contract"}, nogil=True, cache=True)
def _scale_and_sums(row: np.ndarray, row_scale: np.float32, column_scale: np.ndarray) -> tuple[float, float]:
    """Scale ``row`` in place to cosines; return its sum and sum of squares (vectorised)."""
    total = np.float32(0.0)
    squares = np.float32(0.0)
    for j in range(row.size):
        v = row[j] * (row_scale * column_scale[j])
        row[j] = v
        total += v
        squares += v * v
    return total, squares


@njit(inline="always")
def _count_at_least(row: np.ndarray, threshold: np.float32) -> int:
    count = 0
    for j in range(row.size):
        count += row[j] >= threshold
    return count


_BISECTION_STEPS = 82
"""Bisection passes of :func:`_find_threshold` that always suffice (see the bound there)."""


@njit(inline="always")
def _to_ordered(value: np.float32, scratch: np.ndarray) -> np.int64:
    """:func:`_ordered` of a float32 scalar (``scratch``: a float32 ``[1]`` buffer)."""
    scratch[0] = value
    return _ordered(scratch.view(np.int32)[0])


@njit(inline="always")
def _from_ordered(key: np.int64, scratch: np.ndarray) -> np.float32:
    """Inverse of :func:`_to_ordered`."""
    b = key
    if b < 0:
        b = b ^ 0x7FFFFFFF
    scratch.view(np.int32)[0] = np.int32(b)
    return scratch[0]


@njit(nogil=True, cache=True)
def _find_threshold(row: np.ndarray, k: int, cap: int, guess: np.float32, step: np.float32) -> tuple[np.float32, np.float32, bool]:
    """A threshold ``t`` with ``k <= count(row >= t) <= cap``.

    Returns ``(t, hi, True)`` on success. When ties make the window unreachable it returns
    ``(lo, hi, False)`` with adjacent floats ``lo < hi``, ``count(>= lo) > cap`` and
    ``count(>= hi) < k``.

    Every loop is bounded: at most 24 expansion passes, then at most :data:`_BISECTION_STEPS`
    bisection passes. Bisection tracks ``G``, the gap between ``lo`` and ``hi`` in the
    order-preserving integer image of float32 (:func:`_ordered`, so ``G < 2**32`` and ``G <= 1``
    means no float lies strictly between them). Each pass tries the midpoint in value (fast
    on well-spread rows) but falls back to the integer midpoint unless the value midpoint
    lies in the middle half of the integer gap; either way the pass leaves
    ``G' <= G - max(1, G // 4)``. So ``G - 3`` shrinks by a factor 3/4 while ``G >= 4``
    (at most ``ceil(32 / log2(4 / 3)) = 78`` passes) and then by at least 1 per pass
    (2 more): 80 passes reach ``G <= 1``, whatever the row holds (NaN included).
    """
    # All arithmetic stays float32 (numba would widen ``step * 2`` to float64): every
    # threshold is then a float32 value, so "adjacent floats" and the ties ``row == lo`` that
    # the caller keeps are exact.
    t = np.float32(guess)
    step = np.float32(step)
    lo = np.float32(-np.inf)  # count(>= lo) > cap once finite
    hi = np.float32(np.inf)  # count(>= hi) < k once finite
    for _ in range(24):  # expand from the guess until the window is bracketed or found
        c = _count_at_least(row, t)
        if c < k:
            hi = t
            t = np.float32(t - step)
        elif c > cap:
            lo = t
            t = np.float32(t + step)
        else:
            return t, hi, True
        if lo > -np.inf and hi < np.inf:
            break
        step = np.float32(step * np.float32(2.0))
    if not (lo > -np.inf and hi < np.inf):
        # Pathological spread (or NaN): bracket with the exact extremes, NaN skipped.
        lo = np.float32(np.inf)
        hi = np.float32(-np.inf)
        for j in range(row.size):
            if row[j] > -np.inf and row[j] < lo:
                lo = row[j]
            if row[j] > hi:
                hi = row[j]
        hi = np.nextafter(hi, np.float32(np.inf))
        c = _count_at_least(row, lo)  # every counted entry: may already fit the window
        if k <= c <= cap:
            return lo, hi, True
    scratch = np.empty(1, np.float32)
    low_key = _to_ordered(lo, scratch)
    high_key = _to_ordered(hi, scratch)
    for _ in range(_BISECTION_STEPS):  # count(>= lo) >= k (> cap once moved), count(>= hi) < k
        gap = high_key - low_key
        if gap <= 1:  # adjacent (or crossed): no float strictly between lo and hi
            return lo, hi, False
        t = np.float32(0.5 * (np.float64(lo) + np.float64(hi)))
        key = _to_ordered(t, scratch)
        quarter = gap // 4
        if not (low_key + max(quarter, 1) <= key <= high_key - max(quarter, 1)):
            key = low_key + gap // 2
            t = _from_ordered(key, scratch)
        c = _count_at_least(row, t)
        if c < k:
            hi = t
            high_key = key
        elif c > cap:
            lo = t
            low_key = key
        else:
            return t, hi, True
    return lo, hi, False  # unreachable (see the bound above)


@njit(cache=True, nogil=True)
def threshold_keys(
    sims: np.ndarray,
    masked: np.ndarray,
    row_scale: np.ndarray,
    column_scale: np.ndarray,
    k: int,
    z: float,
    keys: np.ndarray,
) -> None:
    """Pack each row's top entries (at least ``k``, at most ``keys.shape[1] - 1``) into ``keys``.

    Args:
        sims: float32 ``[rows, width]`` dot products of raw embeddings, C-contiguous. Scaled
            in place to cosines (``row_scale[r] * column_scale[block, j]``, inverse norms), then
            ``sims[r, masked[r]]`` is set to -inf (the anchor itself, or the one surplus candidate).
        masked: int64 ``[rows]`` column to exclude per row.
        row_scale: float32 ``[rows]`` inverse norm of each row's anchor.
        column_scale: float32 ``[blocks, width]`` inverse norms of each block's candidates;
            rows are split evenly between blocks.
        k: entries needed per row, ``k <= width - 1``.
        z: first threshold guess in standard deviations above the row mean.
        keys: int64 ``[rows, cap + 1]`` output; unused slots hold :data:`KEY_PAD`. After an
            ascending sort of each row, its last ``k`` keys are the top ``k`` in reverse order.
    """
    rows, width = sims.shape
    cap = keys.shape[1] - 1
    per_block = rows // column_scale.shape[0]
    bits_all = sims.view(np.int32)
    kept = np.empty(width + 1, np.int64)
    for r in range(rows):
        row = sims[r]
        bits = bits_all[r]
        out = keys[r]
        # Statistics before masking (one excluded entry barely moves them).
        total, squares = _scale_and_sums(row, row_scale[r], column_scale[r // per_block])
        row[masked[r]] = -np.inf
        c = 0
        if cap >= width:  # keep everything: no selection needed
            for j in range(width):
                kept[j] = j
            c = width
        else:
            mean = total / width
            std = np.sqrt(max(squares / width - mean * mean, 0.0))
            step = np.float32(max(0.25 * std, 1e-6 * max(abs(mean), 1e-3)))
            t, hi, found = _find_threshold(row, k, cap, np.float32(mean + z * std), step)
            if found:
                # Branch-free compaction: every column is written, only kept ones advance c.
                for j in range(width):
                    kept[c] = j
                    c += row[j] >= t
            else:  # ties at t: every entry >= hi (fewer than k), then the first ties at t
                for j in range(width):
                    if row[j] >= hi and c < cap:  # c < cap: memory safety even on NaN rows
                        kept[c] = j
                        c += 1
                for j in range(width):
                    if c == cap:
                        break
                    if row[j] == t:
                        kept[c] = j
                        c += 1
        for i in range(c):
            j = kept[i]
            out[i] = (_ordered(bits[j]) << 32) | j
        for i in range(c, cap + 1):
            out[i] = KEY_PAD


@njit(inline="always")
def _value_bits(key: np.int64) -> np.int32:
    """Inverse of the packing: the float32 bits stored in a key's high half."""
    b = key >> 32
    if b < 0:
        b = b ^ 0x7FFFFFFF
    return np.int32(b)


@njit(cache=True, nogil=True)
def decode_keys(
    keys: np.ndarray,
    columns: np.ndarray,
    k: int,
    out_rows: np.ndarray,
    neighbors: np.ndarray,
    score_bits: np.ndarray,
) -> None:
    """Write the top ``k`` of each sorted key row to ``neighbors[out_rows[r]]``.

    Args:
        keys: int64 ``[rows, width]``, each row sorted ascending.
        columns: int64 ``[blocks, m + 1]`` candidate ids of each block of ``rows / blocks`` rows.
        k: neighbours per row.
        out_rows: int64 ``[rows]`` output row of every row.
        neighbors: int32 ``[R, k]`` output, by decreasing similarity.
        score_bits: ``[R, k]`` float32 scores viewed as int32 (the keys carry the value bits,
            so the similarity block need not be read again), or an empty array.
    """
    rows, width = keys.shape
    per_block = rows // columns.shape[0]
    keep_scores = score_bits.shape[0] > 0
    for r in range(rows):
        # Output rows are scattered over the whole result: request them a few rows ahead.
        if r + _WRITE_AHEAD < rows:
            ahead = out_rows[r + _WRITE_AHEAD]
            for j in range(0, k, 16):  # 16 x 4 bytes: one cache line
                prefetch_write(neighbors, ahead, j)
                if keep_scores:
                    prefetch_write(score_bits, ahead, j)
        block = columns[r // per_block]
        out = out_rows[r]
        for j in range(k):
            key = keys[r, width - 1 - j]
            neighbors[out, j] = block[key & 0xFFFFFFFF]
            if keep_scores:
                score_bits[out, j] = _value_bits(key)


@njit(cache=True, nogil=True)
def self_columns(
    anchors: np.ndarray, candidates: np.ndarray, block_size: int, surplus: np.ndarray, n: int
) -> np.ndarray:
    """Column each anchor slot masks: its own column if it is a candidate, else ``surplus``.

    Args:
        anchors: int64 ``[N]`` anchor of every slot; slot ``s`` belongs to block ``s // block_size``.
        candidates: int64 ``[blocks, m + 1]`` distinct ids per block.
        block_size: slots per block.
        surplus: int64 ``[N]`` random column per slot, used when the anchor is no candidate.
        n: number of nodes.

    Returns:
        int64 ``[N]`` masked column per slot.
    """
    # position[node] is only trusted when candidates[block, position[node]] == node, so the
    # table never needs clearing between blocks.
    position = np.zeros(n, np.int64)
    masked = np.empty(anchors.size, np.int64)
    for block in range(candidates.shape[0]):
        row = candidates[block]
        for j in range(row.size):
            position[row[j]] = j
        for slot in range(block * block_size, min((block + 1) * block_size, anchors.size)):
            p = position[anchors[slot]]
            masked[slot] = p if row[p] == anchors[slot] else surplus[slot]
    return masked


@njit(inline="always")
def _heap_replace_top(values: np.ndarray, ids: np.ndarray, value: np.float32, node: np.int64) -> None:
    """Replace the minimum of a binary min-heap and restore the heap property."""
    size = values.size
    i = 0
    while True:  # bounded: i becomes 2i + 1 or more each pass, so at most log2(size) + 1 passes
        child = 2 * i + 1
        if child >= size:
            break
        if child + 1 < size and values[child + 1] < values[child]:
            child += 1
        if values[child] >= value:
            break
        values[i] = values[child]
        ids[i] = ids[child]
        i = child
    values[i] = value
    ids[i] = node


# Tiles hold finite similarities, so the chunk reductions may assume no NaN (which lets LLVM
# vectorise them); heap minima start at -inf, so infinities stay allowed.
_SCAN_MATH = {"nnan", "nsz", "reassoc", "contract"}


@njit(cache=True, nogil=True, fastmath=_SCAN_MATH)
def heap_update_rows(
    tile: np.ndarray, row0: int, col0: int, heap_values: np.ndarray, heap_ids: np.ndarray
) -> None:
    """Offer ``tile[a, b]`` (similarity of node ``row0 + a`` to ``col0 + b``) to row ``a``'s heap.

    Self-pairs (``row0 + a == col0 + b``) are skipped.
    """
    rows, cols = tile.shape
    full = cols - cols % _CHUNK
    for a in range(rows):
        node = row0 + a
        values = heap_values[node]
        ids = heap_ids[node]
        worst = values[0]
        row = tile[a]
        hits = 0
        for b in range(cols):  # one vectorised pass: most rows have nothing to offer
            hits += row[b] > worst
        if hits == 0:
            continue
        for start in range(0, cols, _CHUNK):
            if start < full:  # constant trip count and an OR: vectorised
                any_hit = np.int32(0)
                for i in range(_CHUNK):
                    any_hit |= np.int32(row[start + i] > worst)
                if any_hit == 0:
                    continue
            for b in range(start, min(start + _CHUNK, cols)):
                v = row[b]
                if v > worst and col0 + b != node:
                    _heap_replace_top(values, ids, v, col0 + b)
                    worst = values[0]


@njit(cache=True, nogil=True, fastmath=_SCAN_MATH)
def heap_update_cols(
    tile: np.ndarray, row0: int, col0: int, heap_values: np.ndarray, heap_ids: np.ndarray
) -> None:
    """Offer ``tile[a, b]`` to column ``b``'s heap (node ``col0 + b``, candidate ``row0 + a``).

    Only for off-diagonal tiles (no self-pairs). The tile is read row by row; a chunk of
    columns is compared with its heaps' minima in one vectorised pass before any heap work.
    """
    rows, cols = tile.shape
    full = cols - cols % _CHUNK
    worst = np.empty(cols, np.float32)
    for b in range(cols):
        worst[b] = heap_values[col0 + b, 0]
    for a in range(rows):
        row = tile[a]
        hits = 0
        for b in range(cols):
            hits += row[b] > worst[b]
        if hits == 0:
            continue
        for start in range(0, cols, _CHUNK):
            if start < full:
                any_hit = np.int32(0)
                for i in range(_CHUNK):
                    any_hit |= np.int32(row[start + i] > worst[start + i])
                if any_hit == 0:
                    continue
            for b in range(start, min(start + _CHUNK, cols)):
                v = row[b]
                if v > worst[b]:
                    node = col0 + b
                    _heap_replace_top(heap_values[node], heap_ids[node], v, row0 + a)
                    worst[b] = heap_values[node, 0]


@njit(cache=True, nogil=True)
def heaps_to_keys(heap_values: np.ndarray, heap_ids: np.ndarray, keys: np.ndarray) -> None:
    """Pack heap entries into sortable int64 keys ``(value bits << 32) | (2**32 - 1 - id)``.

    The inverted id makes equal similarities sort by increasing id once the row is reversed.
    """
    rows, k = heap_values.shape
    bits = heap_values.view(np.int32)
    for r in range(rows):
        for j in range(k):
            keys[r, j] = (_ordered(bits[r, j]) << 32) | (0xFFFFFFFF - heap_ids[r, j])
