r"""Relative hardness of batches, and the search that holds a hardness target.

*Hardness* is the mean cosine similarity of the distinct pairs of a batch, in the bank's space
(the pairs an in-batch contrastive loss treats as negatives). Raw values are not comparable
across banks: a projection head trained with NT-Xent spreads its outputs almost uniformly on
the sphere (every batch scores about 0), backbone features cluster. So hardness is put on a
0-1 scale between two references measured on the same bank (:class:`HardnessScale`):

* 0: uniform batches, the mean cosine over all pairs of distinct seen rows. Exact and
  ``O(N d)``: with unit rows :math:`u_i`, it is :math:`(\lVert\sum_i u_i\rVert^2 - n) / (n (n - 1))`.
* 1: exact kNN batches, a seed with its ``B - 1`` nearest seen rows, on a sample of seeds.

A value of 0.5 is halfway, in mean in-batch cosine, between shuffling and the kNN sampler.
Values below 0 or above 1 are possible (walks can be tighter than kNN batches of one seed).

:func:`search_hardness` is the controller behind ``BatchSampler(target_hardness=...)``: it
moves one position along a ladder of graph settings ordered by hardness (more candidates
``m`` at the configured ``k``, then fewer neighbours ``k`` at the largest ``m``), evaluating
each tried setting by a simulated epoch on the real graph, and keeps the closest.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ._validation import check_int

__all__ = [
    "HardnessLadder",
    "HardnessScale",
    "HardnessSearch",
    "calibrate",
    "epoch_profile",
    "hardness_scale",
    "mean_pair_similarity",
    "search_hardness",
]

_CHUNK_ROWS = 1 << 15


@dataclass(frozen=True)
class HardnessScale:
    """The two references of relative hardness on one bank (mean in-batch cosines)."""

    uniform: float
    """Mean cosine of uniform batches (all pairs of distinct seen rows)."""
    knn: float
    """Mean in-batch cosine of exact kNN batches (a seed and its ``B - 1`` nearest seen rows)."""
    seeds: int = 0
    """Seeds the kNN reference was measured on."""

    @property
    def span(self) -> float:
        """``knn - uniform``; at most ``1e-6`` means the bank has no structure to be hard about."""
        return self.knn - self.uniform

    def relative(self, similarity: float) -> float:
        """``(similarity - uniform) / (knn - uniform)``; NaN if the span is at most 1e-6 or
        ``similarity`` is NaN."""
        if not self.span > 1e-6 or not math.isfinite(similarity):
            return float("nan")
        return (similarity - self.uniform) / self.span

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _unit(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float32)
    norms = np.linalg.norm(rows, axis=-1, keepdims=True)
    return rows / np.maximum(norms, np.finfo(np.float32).tiny)


def _check_inputs(embeddings: Any, valid: Any) -> tuple[np.ndarray, np.ndarray | None]:
    embeddings = np.asarray(embeddings)
    if embeddings.ndim != 2 or not np.issubdtype(embeddings.dtype, np.floating):
        raise ValueError(f"embeddings must be a 2-D float array, got {embeddings.dtype} {embeddings.shape}")
    if valid is not None:
        valid = np.asarray(valid)
        if valid.dtype != np.bool_ or valid.shape != (embeddings.shape[0],):
            raise ValueError(
                f"valid must be a bool array of shape ({embeddings.shape[0]},), got {valid.dtype} {valid.shape}"
            )
        valid = None if valid.all() else valid
    return embeddings, valid


def hardness_scale(
    embeddings: Any,
    batch_size: int,
    rng: np.random.Generator,
    *,
    valid: Any = None,
    num_seeds: int | None = None,
) -> HardnessScale:
    """Measure the references of relative hardness on ``embeddings``.

    Args:
        embeddings: float ``[N, d]`` (any scale: rows are normalised here, chunk by chunk).
        batch_size: ``B``, at least 2; kNN batches hold ``min(B, n)`` rows.
        rng: draws the kNN reference's seeds.
        valid: optional bool ``[N]``, the rows to use (e.g. ``bank.seen``); at least 2.
        num_seeds: seeds of the kNN reference (default: ``clip(2**26 // N, 32, 256)``, i.e.
            256 up to N = 262144 and then fewer, so that the ``seeds x N`` similarities stay
            at about 6.7e7 multiply-adds per dimension).

    Raises:
        ValueError: on a non-2-D or non-float ``embeddings``, a bad ``valid``, fewer than 2
            valid rows, ``batch_size < 2`` or ``num_seeds < 1``.
    """
    embeddings, valid = _check_inputs(embeddings, valid)
    batch_size = check_int("batch_size", batch_size, low=2)
    rows = np.arange(embeddings.shape[0]) if valid is None else np.flatnonzero(valid)
    n = rows.size
    if n < 2:
        raise ValueError(f"hardness needs at least 2 valid rows, got {n}")
    if num_seeds is None:
        num_seeds = int(np.clip((1 << 26) // max(n, 1), 32, 256))
    num_seeds = min(check_int("num_seeds", num_seeds, low=1), n)
    total = np.zeros(embeddings.shape[1], dtype=np.float64)
    for start in range(0, n, _CHUNK_ROWS):
        total += _unit(embeddings[rows[start : start + _CHUNK_ROWS]]).sum(axis=0, dtype=np.float64)
    # Zero rows count as unit rows here and as 0 there; a bank has none worth worrying about.
    uniform = float((total @ total - n) / (n * (n - 1)))
    seeds = rows[np.sort(rng.choice(n, size=num_seeds, replace=False))]
    members = min(batch_size, n) - 1
    seed_vectors = _unit(embeddings[seeds])
    best_similarity = np.full((num_seeds, 0), -np.inf, dtype=np.float32)
    best_rows = np.zeros((num_seeds, 0), dtype=np.int64)
    for start in range(0, n, _CHUNK_ROWS):
        chunk = rows[start : start + _CHUNK_ROWS]
        similarity = seed_vectors @ _unit(embeddings[chunk]).T
        similarity[seeds[:, None] == chunk[None, :]] = -np.inf  # a seed is not its own neighbour
        similarity = np.concatenate([best_similarity, similarity], axis=1)
        candidates = np.concatenate([best_rows, np.broadcast_to(chunk, (num_seeds, chunk.size))], axis=1)
        keep = min(members, similarity.shape[1])
        top = np.argpartition(-similarity, keep - 1, axis=1)[:, :keep]
        best_similarity = np.take_along_axis(similarity, top, axis=1)
        best_rows = np.take_along_axis(candidates, top, axis=1)
    batches = np.concatenate([seeds[:, None], best_rows], axis=1)
    knn = mean_pair_similarity(embeddings, batches)
    return HardnessScale(uniform=uniform, knn=knn, seeds=int(num_seeds))


def mean_pair_similarity(embeddings: Any, batches: Sequence[Sequence[int]] | np.ndarray, *, valid: Any = None) -> float:
    """Mean cosine similarity over the distinct pairs of ``batches``, every pair weighted equally.

    Only the rows of the batches are normalised (no ``[N, d]`` copy). Pairs with a row that is
    not ``valid`` are left out; NaN if no pair is left.

    Raises:
        ValueError: on a non-2-D or non-float ``embeddings`` or a bad ``valid``.
    """
    embeddings, valid = _check_inputs(embeddings, valid)
    total, pairs = _pair_sums(embeddings, batches, valid)
    return total / pairs if pairs else float("nan")


def _pair_sums(
    embeddings: np.ndarray, batches: Sequence[Sequence[int]] | np.ndarray, valid: np.ndarray | None
) -> tuple[float, int]:
    """``(sum of cosines, count)`` over the ordered pairs ``i != j`` of each batch (checked inputs):
    ``O(B d)`` per batch, so that sums of several groups of batches can be combined."""
    total, pairs = 0.0, 0
    for batch in batches:
        batch = np.asarray(batch, dtype=np.int64)
        if valid is not None:
            batch = batch[valid[batch]]
        size = batch.size
        if size < 2:
            continue
        vectors = _unit(embeddings[batch]).astype(np.float64)
        summed = vectors.sum(axis=0)
        # Sum over ordered pairs i != j of u_i . u_j = |sum u|^2 - sum |u_i|^2.
        total += float(summed @ summed - np.einsum("ij,ij->", vectors, vectors))
        pairs += size * (size - 1)
    return total, pairs


@dataclass(frozen=True)
class HardnessLadder:
    """Graph settings ordered by hardness, indexed by a position in ``[0, length]``.

    ``[0, 1]``: ``m`` from ``k`` (a random graph: uniform batches) to ``max_m`` on a log scale,
    at the configured ``k``. ``(1, length]``: ``m = max_m`` and ``k`` halving per unit, down
    to ``min_k``: with every candidate in reach, fewer neighbours keep a walk tighter.
    """

    k: int
    max_m: int
    min_k: int

    @property
    def length(self) -> float:
        return 1.0 + (math.log2(self.k / self.min_k) if self.min_k < self.k else 0.0)

    def settings(self, position: float) -> tuple[int, int]:
        """``(k, m)`` at ``position`` (clipped to ``[0, length]``)."""
        position = min(max(position, 0.0), self.length)
        if position <= 1.0:
            return self.k, round(self.k * (self.max_m / self.k) ** position)
        return max(self.min_k, round(self.k / 2.0 ** (position - 1.0))), self.max_m

    def position(self, k: int, m: int) -> float:
        """The position of ``(k, m)`` (approximate for settings off the ladder)."""
        if k >= self.k:
            if self.max_m <= self.k:
                return 1.0
            return min(max(math.log(max(m, self.k) / self.k) / math.log(self.max_m / self.k), 0.0), 1.0)
        return min(1.0 + math.log2(self.k / max(k, self.min_k)), self.length)


@dataclass
class HardnessSearch:
    """The outcome of one :func:`search_hardness`: the setting kept and every one tried."""

    k: int
    m: int
    position: float
    relative_hardness: float
    """Relative hardness of the kept setting (its simulated epoch)."""
    tried: list[dict[str, float]] = field(default_factory=list)
    """``{"k", "m", "position", "relative_hardness"}`` of each evaluation, in order."""


def search_hardness(
    evaluate: Callable[[int, int], float],
    ladder: HardnessLadder,
    target: float,
    tolerance: float,
    *,
    start: float,
    max_evaluations: int,
) -> HardnessSearch:
    """Find a ladder setting whose ``evaluate(k, m)`` lies within ``tolerance / 2`` of ``target``.

    Bisection on the ladder position from ``start`` (the previous choice: one evaluation when
    the bank has not drifted), assuming hardness grows along the ladder; it stops on success,
    after ``max_evaluations`` evaluations, or when no untried setting is left in the bracket
    (the bisection is finer than the integer settings: when the midpoint repeats a tried
    setting, the bracket's far end is tried once). Half the tolerance is the aim so that the
    drift of a training epoch has the other half. NaN evaluations (a bank without structure) end the search at once.

    Returns:
        The closest setting tried (the first on ties).

    Raises:
        ValueError: if ``max_evaluations < 1``.
    """
    max_evaluations = check_int("max_evaluations", max_evaluations, low=1)
    low, high = 0.0, ladder.length
    position = min(max(start, low), high)
    tried: list[dict[str, float]] = []
    seen: dict[tuple[int, int], float] = {}
    rising = True
    while len(tried) < max_evaluations:
        k, m = ladder.settings(position)
        if (k, m) in seen:
            # The bisection is finer than the integer settings: try the bracket's far end once.
            position = high if rising else low
            k, m = ladder.settings(position)
            if (k, m) in seen:
                break
        value = float(evaluate(k, m))
        seen[(k, m)] = value
        tried.append({"k": k, "m": m, "position": position, "relative_hardness": value})
        if not math.isfinite(value) or abs(value - target) <= tolerance / 2:
            break
        rising = value < target
        if rising:
            low = position
        else:
            high = position
        position = (low + high) / 2.0
    finite = [entry for entry in tried if math.isfinite(entry["relative_hardness"])]
    best = min(finite, key=lambda e: abs(e["relative_hardness"] - target)) if finite else tried[0]
    return HardnessSearch(
        k=int(best["k"]), m=int(best["m"]), position=float(best["position"]),
        relative_hardness=float(best["relative_hardness"]), tried=tried,
    )


def calibrate(
    build: Callable[[int, int], Any],
    simulate: Callable[[Any], list[list[int]]],
    embeddings: Any,
    batch_size: int,
    ladder: HardnessLadder,
    target: float,
    tolerance: float,
    rng: np.random.Generator,
    *,
    valid: Any = None,
    start: float,
    max_evaluations: int,
) -> tuple[Any, HardnessSearch, HardnessScale]:
    """Build the graph whose simulated epoch is closest to ``target`` relative hardness.

    Args:
        build: ``(k, m) -> graph``, the build a refresh would make with those settings.
        simulate: ``graph -> batches``, an epoch (or a sample of batches) walked on it the way
            the sampler walks, from its own generator.
        embeddings, valid: the bank the graph is built from, and its seen rows.
        batch_size, ladder, target, tolerance, start, max_evaluations: see
            :func:`search_hardness`.
        rng: draws the kNN reference's seeds.

    Returns:
        ``(graph, search, scale)``: the graph of the kept setting (built once: the search
        keeps the best graph so far), the search, and the references it used.
    """
    scale = hardness_scale(embeddings, batch_size, rng, valid=valid)
    best: dict[str, Any] = {}  # the closest graph so far: at most two graphs alive at a time

    def evaluate(k: int, m: int) -> float:
        graph = build(k, m)
        value = scale.relative(mean_pair_similarity(embeddings, _spread(simulate(graph)), valid=valid))
        distance = abs(value - target) if math.isfinite(value) else math.inf
        if not best or distance < best["distance"]:  # the first on ties, as search_hardness
            best.update(setting=(k, m), graph=graph, distance=distance)
        return value

    search = search_hardness(evaluate, ladder, target, tolerance, start=start, max_evaluations=max_evaluations)
    graph = best["graph"] if best.get("setting") == (search.k, search.m) else build(search.k, search.m)
    return graph, search, scale


_SAMPLED_BATCHES = 256


def _spread(batches: list[list[int]], count: int = _SAMPLED_BATCHES) -> list[list[int]]:
    """At most ``count`` batches spread evenly over the epoch (late batches count as much as early)."""
    if len(batches) <= count:
        return batches
    return [batches[i] for i in np.linspace(0, len(batches) - 1, count).round().astype(np.int64)]


def epoch_profile(
    embeddings: Any,
    batches: list[list[int]],
    batch_size: int,
    rng: np.random.Generator,
    *,
    valid: Any = None,
    parts: int = 4,
) -> dict[str, Any]:
    """Relative hardness of an epoch's batches, overall and by consecutive ``parts`` (quarters).

    Measures the references first (:func:`hardness_scale` with ``batch_size`` and ``rng``), then
    uses at most 256 batches spread over the epoch (and 64 over each part).
    """
    scale = hardness_scale(embeddings, max(2, batch_size), rng, valid=valid)
    chunks = [list(part) for part in np.array_split(np.arange(len(batches)), parts)] if batches else []
    by_part = [
        scale.relative(mean_pair_similarity(embeddings, _spread([batches[i] for i in chunk], 64), valid=valid))
        if chunk else float("nan")
        for chunk in chunks
    ]
    similarity = mean_pair_similarity(embeddings, _spread(batches), valid=valid) if batches else float("nan")
    return {
        "relative_hardness": scale.relative(similarity), "similarity": similarity,
        "by_part": by_part, "scale": scale.as_dict(),
    }
