"""What a sampler's batches look like: hardness, false-negative proxy, coverage.

Hardness is the mean cosine similarity between distinct members of a batch (higher: harder
negatives). When labels are known, the share of same-label pairs in a batch is a proxy for
false negatives (pairs treated as negatives that share a class).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ._validation import to_numpy_2d

__all__ = ["EpochSummary", "summarize_epoch"]


@dataclass
class EpochSummary:
    """Statistics of one epoch of batches. Pair statistics weight every pair equally."""

    num_batches: int
    """Batches in the epoch."""
    num_indices: int
    """Indices yielded, repeats included."""
    coverage: float
    """Share of the ``N`` instances that appeared at least once."""
    repeats: int
    """Indices yielded more than once in the epoch (0 for exactly-once sampling)."""
    mean_similarity: float | None = None
    """Mean cosine similarity of distinct in-batch pairs (``None`` without embeddings)."""
    same_label_share: float | None = None
    """Share of in-batch pairs with equal labels (``None`` without labels)."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize_epoch(
    batches: Iterable[Sequence[int]],
    num_instances: int,
    *,
    embeddings: Any = None,
    labels: Any = None,
) -> EpochSummary:
    """Summarise one epoch of batches.

    Args:
        batches: the epoch, as lists/arrays of indices.
        num_instances: ``N``, for coverage.
        embeddings: optional ``[N, d]`` array or tensor (cosine similarity is used).
        labels: optional ``[N]`` integer labels.

    Raises:
        ValueError: if embeddings or labels do not have ``N`` rows.
    """
    unit = None
    if embeddings is not None:
        unit = to_numpy_2d("embeddings", embeddings).astype(np.float32)
        if unit.shape[0] != num_instances:
            raise ValueError(f"embeddings must have {num_instances} rows, got {unit.shape[0]}")
        unit /= np.maximum(np.linalg.norm(unit, axis=1, keepdims=True), np.finfo(np.float32).tiny)
    label_array = None
    if labels is not None:
        label_array = np.asarray(labels).reshape(-1)
        if label_array.shape[0] != num_instances:
            raise ValueError(f"labels must have {num_instances} entries, got {label_array.shape[0]}")

    counts = np.zeros(num_instances, dtype=np.int64)
    pairs = 0
    similarity_sum = 0.0
    same_label_pairs = 0
    num_batches = 0
    for batch in batches:
        index = np.asarray(batch, dtype=np.int64)
        num_batches += 1
        np.add.at(counts, index, 1)
        size = index.size
        if size < 2:
            continue
        pairs += size * (size - 1)
        if unit is not None:
            rows = unit[index]
            total = float(rows.sum(axis=0) @ rows.sum(axis=0))
            # Sum over ordered pairs i != j = |sum of rows|^2 - sum of |row|^2.
            similarity_sum += total - float(np.einsum("ij,ij->", rows, rows))
        if label_array is not None:
            _, per_label = np.unique(label_array[index], return_counts=True)
            same_label_pairs += int((per_label * (per_label - 1)).sum())

    return EpochSummary(
        num_batches=num_batches,
        num_indices=int(counts.sum()),
        coverage=float((counts > 0).mean()),
        repeats=int(np.maximum(counts - 1, 0).sum()),
        mean_similarity=None if unit is None or pairs == 0 else similarity_sum / pairs,
        same_label_share=None if label_array is None or pairs == 0 else same_label_pairs / pairs,
    )
