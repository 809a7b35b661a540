"""What a sampler's batches look like: hardness, false-negative proxy, coverage, repeats.

Hardness is the cosine similarity between distinct members of a batch (higher: harder
negatives for an in-batch contrastive loss). When labels are known, the share of same-label
pairs in a batch is a proxy for false negatives (pairs treated as negatives that share a class).
Every pair of a batch is counted once; epoch statistics weight every pair equally.

The work is dense NumPy: batches of equal size are stacked into ``[g, B]`` index arrays and
scored with one batched matrix product, ``g`` chosen so that a chunk holds at most about four
million similarities.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .._validation import to_numpy_2d

__all__ = [
    "QUANTILES",
    "BatchStatistics",
    "EpochSummary",
    "batch_statistics",
    "summarize_epoch",
    "unit_rows",
]

QUANTILES: tuple[float, ...] = (0.1, 0.5, 0.9)
"""Quantiles of the in-batch cosine similarity that the summaries report (10/50/90 %)."""

# Epoch quantiles come from a histogram so that memory does not grow with the epoch;
# 4000 bins over [-1, 1] resolve them to 5e-4.
_BINS = 4000
_MAX_CHUNK_ELEMENTS = 1 << 22


@dataclass
class BatchStatistics:
    """Per-batch statistics of a sequence of ``num_batches`` batches.

    Attributes:
        sizes: int64 ``[num_batches]``, indices per batch.
        mean_similarity: float64 ``[num_batches]``, mean cosine similarity over the batch's
            pairs (NaN for batches with fewer than two members with embeddings); ``None``
            without embeddings.
        similarity_quantiles: float64 ``[num_batches, len(QUANTILES)]``, exact 10/50/90 %
            quantiles of the batch's pair similarities (NaN as above); ``None`` without embeddings.
        same_label_share: float64 ``[num_batches]``, share of the batch's pairs with equal
            labels (NaN for batches of one); ``None`` without labels.
    """

    sizes: np.ndarray
    mean_similarity: np.ndarray | None = None
    similarity_quantiles: np.ndarray | None = None
    same_label_share: np.ndarray | None = None


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
    similarity_q10: float | None = None
    """10 % quantile of the in-batch pair similarities (to within 5e-4; ``None`` without embeddings)."""
    similarity_q50: float | None = None
    """Median in-batch pair similarity (to within 5e-4)."""
    similarity_q90: float | None = None
    """90 % quantile of the in-batch pair similarities (to within 5e-4)."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def unit_rows(embeddings: Any, num_instances: int, name: str = "embeddings") -> np.ndarray:
    """``embeddings`` as float32 ``[N, d]`` rows of unit length (zero rows stay zero).

    Raises:
        ValueError: if it is not a finite 2-D array with ``num_instances`` rows.
        TypeError: if it is not numeric.
    """
    unit = to_numpy_2d(name, embeddings).astype(np.float32)
    if unit.shape[0] != num_instances:
        raise ValueError(f"{name} must have {num_instances} rows, got {unit.shape[0]}")
    unit /= np.maximum(np.linalg.norm(unit, axis=1, keepdims=True), np.finfo(np.float32).tiny)
    return unit


def batch_statistics(
    batches: Iterable[Sequence[int]],
    num_instances: int,
    *,
    embeddings: Any = None,
    labels: Any = None,
    valid: Any = None,
) -> BatchStatistics:
    """Hardness and same-label share of every batch.

    Args:
        batches: lists/arrays/tensors of indices in ``[0, N)``.
        num_instances: ``N``.
        embeddings: optional ``[N, d]`` array or tensor; cosine similarity is used.
        labels: optional ``[N]`` labels (any dtype that supports ``==``).
        valid: optional bool ``[N]``: rows whose embedding is meaningful (e.g. ``bank.seen``);
            pairs with an invalid member are left out of the similarity statistics.

    Raises:
        ValueError: on indices outside ``[0, N)``, or ``embeddings``/``labels``/``valid``
            without ``N`` rows.
        TypeError: on non-integer indices or non-numeric embeddings.
    """
    analysis = _Analysis(num_instances, embeddings, labels, valid)
    return analysis.run(_index_arrays(batches, num_instances))[0]


def summarize_epoch(
    batches: Iterable[Sequence[int]],
    num_instances: int,
    *,
    embeddings: Any = None,
    labels: Any = None,
    valid: Any = None,
) -> EpochSummary:
    """Summarise one epoch of batches.

    Args:
        batches: the epoch, as lists/arrays/tensors of indices in ``[0, N)``.
        num_instances: ``N``, for coverage.
        embeddings: optional ``[N, d]`` array or tensor (cosine similarity is used).
        labels: optional ``[N]`` labels.
        valid: optional bool ``[N]``, see :func:`batch_statistics`.

    Raises:
        ValueError: on indices outside ``[0, N)``, or embeddings, labels or ``valid``
            without ``N`` rows.
        TypeError: on non-integer indices or non-numeric embeddings.
    """
    index_arrays = _index_arrays(batches, num_instances)
    analysis = _Analysis(num_instances, embeddings, labels, valid)
    _, pooled = analysis.run(index_arrays)
    counts = np.zeros(num_instances, dtype=np.int64)
    if index_arrays:
        counts = np.bincount(np.concatenate(index_arrays), minlength=num_instances)
    summary = EpochSummary(
        num_batches=len(index_arrays),
        num_indices=int(counts.sum()),
        coverage=float((counts > 0).mean()),
        repeats=int(np.maximum(counts - 1, 0).sum()),
    )
    if analysis.unit is not None and pooled["similarity_pairs"] > 0:
        summary.mean_similarity = pooled["similarity_sum"] / pooled["similarity_pairs"]
        q10, q50, q90 = histogram_quantiles(pooled["histogram"], QUANTILES)
        summary.similarity_q10, summary.similarity_q50, summary.similarity_q90 = q10, q50, q90
    if analysis.labels is not None and pooled["label_pairs"] > 0:
        summary.same_label_share = pooled["same_label_pairs"] / pooled["label_pairs"]
    return summary


def histogram_quantiles(counts: np.ndarray, quantiles: Sequence[float]) -> list[float]:
    """Quantiles of values in ``[-1, 1]`` binned into ``len(counts)`` equal bins.

    Linear interpolation inside the bin that holds each quantile; exact to one bin width.
    """
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    if total <= 0:
        return [float("nan")] * len(quantiles)
    width = 2.0 / counts.size
    cumulative = np.cumsum(counts)
    targets = np.asarray(quantiles, dtype=np.float64) * total
    bins = np.minimum(np.searchsorted(cumulative, targets, side="left"), counts.size - 1)
    before = np.where(bins > 0, cumulative[bins - 1], 0.0)
    inside = np.divide(targets - before, counts[bins], out=np.zeros_like(targets), where=counts[bins] > 0)
    return (-1.0 + (bins + np.clip(inside, 0.0, 1.0)) * width).tolist()


# ---------------------------------------------------------------------- internals


def _index_arrays(batches: Iterable[Sequence[int]], num_instances: int) -> list[np.ndarray]:
    arrays = []
    for batch in batches:
        if hasattr(batch, "detach"):  # torch tensors from a DataLoader
            batch = batch.detach().cpu().numpy()
        index = np.asarray(batch).reshape(-1)
        if index.size and not np.issubdtype(index.dtype, np.integer):
            raise TypeError(f"batches must hold integer indices, got dtype {index.dtype}")
        index = index.astype(np.int64, copy=False)
        if index.size and (index.min() < 0 or index.max() >= num_instances):
            raise ValueError(f"batches must hold indices in [0, {num_instances}), got {index.min()}..{index.max()}")
        arrays.append(index)
    return arrays


class _Analysis:
    """Validated inputs plus the chunked, per-size-group pair computation."""

    def __init__(self, num_instances: int, embeddings: Any, labels: Any, valid: Any) -> None:
        self.num_instances = num_instances
        self.unit = None if embeddings is None else unit_rows(embeddings, num_instances)
        self.labels = None
        if labels is not None:
            labels = np.asarray(labels).reshape(-1)
            if labels.shape[0] != num_instances:
                raise ValueError(f"labels must have {num_instances} entries, got {labels.shape[0]}")
            self.labels = labels
        self.valid = None
        if valid is not None:
            valid = np.asarray(valid)
            if valid.dtype != np.bool_ or valid.shape != (num_instances,):
                raise ValueError(f"valid must be a bool array of shape ({num_instances},), got {valid.dtype} {valid.shape}")
            self.valid = None if valid.all() else valid

    def run(self, batches: list[np.ndarray]) -> tuple[BatchStatistics, dict[str, Any]]:
        count = len(batches)
        sizes = np.array([b.size for b in batches], dtype=np.int64)
        stats = BatchStatistics(sizes=sizes)
        pooled: dict[str, Any] = {
            "similarity_sum": 0.0, "similarity_pairs": 0, "histogram": np.zeros(_BINS, dtype=np.int64),
            "same_label_pairs": 0, "label_pairs": 0,
        }
        if self.unit is not None:
            stats.mean_similarity = np.full(count, np.nan)
            stats.similarity_quantiles = np.full((count, len(QUANTILES)), np.nan)
        if self.labels is not None:
            stats.same_label_share = np.full(count, np.nan)
        for size in np.unique(sizes):
            if size < 2:
                continue
            members = np.flatnonzero(sizes == size)
            first, second = np.triu_indices(int(size), 1)
            chunk = max(1, _MAX_CHUNK_ELEMENTS // int(size * size))
            for start in range(0, members.size, chunk):
                rows = members[start : start + chunk]
                index = np.stack([batches[i] for i in rows])  # [g, B]
                if self.unit is not None:
                    self._similarities(index, rows, first, second, stats, pooled)
                if self.labels is not None:
                    labels = self.labels[index]
                    same = (labels[:, first] == labels[:, second]).sum(axis=1)
                    stats.same_label_share[rows] = same / first.size
                    pooled["same_label_pairs"] += int(same.sum())
                    pooled["label_pairs"] += int(first.size * rows.size)
        return stats, pooled

    def _similarities(self, index, rows, first, second, stats, pooled) -> None:
        vectors = self.unit[index]  # [g, B, d]
        similarity = np.matmul(vectors, vectors.transpose(0, 2, 1))[:, first, second]  # [g, P]
        if self.valid is not None:
            known = self.valid[index]
            similarity = np.where(known[:, first] & known[:, second], similarity, np.nan)
        with warnings.catch_warnings():
            # Batches without a valid pair give NaN rows: NaN is the documented answer there.
            warnings.simplefilter("ignore", RuntimeWarning)
            stats.mean_similarity[rows] = np.nanmean(similarity, axis=1)
            stats.similarity_quantiles[rows] = np.nanquantile(similarity, QUANTILES, axis=1).T
        finite = similarity[~np.isnan(similarity)].astype(np.float64)
        pooled["similarity_sum"] += float(finite.sum())
        pooled["similarity_pairs"] += int(finite.size)
        bins = np.clip(((finite + 1.0) * (_BINS / 2.0)).astype(np.int64), 0, _BINS - 1)
        pooled["histogram"] += np.bincount(bins, minlength=_BINS)
