"""Exact draws of k distinct values per row, with no retry loop (numba).

:func:`partial_shuffle_rows` takes the first ``k`` entries of a partial Fisher-Yates shuffle of
``range(n)`` for every row: exactly ``k`` swaps per row, whatever ``n`` is, with the swapped
positions kept in a small open-addressing table instead of an ``n``-long permutation. It is
what gives the rows of a graph that the mask leaves out their uniformly random, distinct
neighbours (:func:`batchsampler._build.random_distinct_neighbors`).
"""

from __future__ import annotations

import numpy as np
from numba import njit

_FIBONACCI = np.uint64(0x9E3779B97F4A7C15)  # 2**64 / golden ratio: multiplicative hashing


@njit(inline="always")
def _probe(keys: np.ndarray, stamps: np.ndarray, stamp: np.int64, position: np.int64, shift: np.uint64) -> np.int64:
    """Slot of ``position`` in an open-addressing table (linear probing), or the empty slot
    where it belongs. Slots whose stamp differs from ``stamp`` are empty (no clearing needed).

    Terminates within ``keys.size`` probes: the caller keeps fewer live entries than slots,
    so an empty slot exists and the probe sequence visits every slot before repeating.
    """
    mask = keys.size - 1
    slot = np.int64((np.uint64(position) * _FIBONACCI) >> shift)
    for _ in range(keys.size):
        if stamps[slot] != stamp or keys[slot] == position:
            return slot
        slot = (slot + 1) & mask
    return np.int64(-1)  # unreachable (see above)


@njit(cache=True, nogil=True)
def partial_shuffle_rows(draws: np.ndarray, n: int, skip: np.ndarray, out: np.ndarray) -> bool:
    """Row ``r`` of ``out``: the first ``k`` entries of a virtual permutation of ``range(n)``
    shuffled by a partial Fisher-Yates pass, i.e. ``k`` distinct values in ``[0, n)``, uniformly
    random and in uniformly random order.

    Position ``i`` of row ``r`` is swapped with position ``draws[i, r]`` (uniform in ``[i, n)``).
    The permutation is never materialised: a small hash table (``>= 2k`` slots, cache-resident)
    holds the positions a row has swapped so far, every other position holds itself, so a row
    costs ``O(k)`` time and memory whatever ``n`` is. A row stores at most ``k`` entries (one
    per swap) in a table of more than ``k`` slots, so every probe finds its slot.

    Args:
        draws: int64 ``[k, R]`` with ``i <= draws[i, r] < n`` (column-major: one Generator
            call per position ``i`` draws it for every row, with a scalar bound).
        n: population size.
        skip: int64 ``[R]``; values ``>= skip[r]`` of row ``r`` are shifted up by one, so
            the row draws from ``[0, n]`` without ``skip[r]`` (pass ``n`` to shift nothing).
        out: int64 ``[R, k]`` output.

    Returns:
        True (False only if a probe failed, which the table size rules out).
    """
    k, rows = draws.shape
    bits = 1
    while (1 << bits) < 2 * k:  # bounded: at most 63 doublings
        bits += 1
    size = 1 << bits
    shift = np.uint64(64 - bits)
    keys = np.zeros(size, np.int64)
    values = np.zeros(size, np.int64)
    stamps = np.zeros(size, np.int64)
    for r in range(rows):  # bounded: R rows of exactly k swaps each
        s = np.int64(r + 1)
        for i in range(k):
            j = draws[i, r]
            slot_i = _probe(keys, stamps, s, np.int64(i), shift)
            slot_j = _probe(keys, stamps, s, j, shift)
            if slot_i < 0 or slot_j < 0:
                return False
            held_i = values[slot_i] if stamps[slot_i] == s else np.int64(i)
            held_j = values[slot_j] if stamps[slot_j] == s else j
            out[r, i] = held_j + (held_j >= skip[r])
            # Position i is never read again (later draws are >= i + 1): only j is stored.
            keys[slot_j] = j
            values[slot_j] = held_i
            stamps[slot_j] = s
    return True
