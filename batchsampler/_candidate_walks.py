"""Candidate walks of ``BatchSampler(target_hardness=...)``: the walk that lands the epoch on the aim.

:class:`CandidateWalksMixin` chooses, among ``candidate_walks`` walks of a group of batches (one
batch with ``replacement``), the one that brings the whole epoch closest to
:attr:`~batchsampler.BatchSampler.hardness_aim`: the epoch so far, the candidate, and in an
exactly-once epoch what the later batches are expected to add, from the calibration's simulated
epoch (:meth:`CandidateWalksMixin._expected_rest`). It reads the sampler's graph, bank and history and
the hardness references of :class:`~batchsampler._hardness_target.HardnessTargetMixin`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from .hardness import _check_inputs, _pair_sums
from .walk import WalkStats

__all__ = ["CandidateWalksMixin"]


class CandidateWalksMixin:
    """The candidate-walk choice of a sampler with a hardness target (see the module)."""

    def _expected_rest(self, batches: list[list[int]], vectors: np.ndarray, seen: np.ndarray) -> dict[str, list[float]]:
        """What the batches from each position of an exactly-once epoch on add to it, expected
        from ``batches`` (whole epochs walked on one graph, :meth:`_walk_epoch`):
        ``{"rest_similarity", "rest_pairs"}``, each of length ``len(self) + 1``, entry ``i`` the
        mean sum of pair cosines (and pair count) of batches ``i ..`` of an epoch; entry
        ``len(self)`` is 0. Empty when ``batches`` do not split into whole epochs.

        Stored with the graph (``build_params["hardness"]``), so that a resumed sampler chooses
        as the uninterrupted one. Not for ``replacement``: its batches are alike wherever they
        fall, and choosing each for the epoch so far keeps every part of the epoch on the target.
        """
        total = len(self)
        if not batches or len(batches) % total:
            return {}
        sums, pairs = np.zeros(total), np.zeros(total)
        for position, batch in enumerate(batches):
            measured = _pair_sums(vectors, [batch], seen)
            sums[position % total] += measured[0]
            pairs[position % total] += measured[1]
        epochs = len(batches) // total

        def rest(values: np.ndarray) -> list[float]:
            return [*(np.cumsum(values[::-1])[::-1] / epochs).tolist(), 0.0]

        return {"rest_similarity": rest(sums), "rest_pairs": rest(pairs)}

    def _rest_after(self, position: int) -> tuple[float, float]:
        """Expected ``(sum of pair cosines, pairs)`` of the epoch's batches from ``position`` on,
        on the graph in use (see :meth:`_expected_rest`); ``(0, 0)`` when unknown."""
        hardness = self.graph.build_params.get("hardness") if self.graph is not None else None
        if not isinstance(hardness, dict):
            return 0.0, 0.0
        sums, pairs = hardness.get("rest_similarity"), hardness.get("rest_pairs")
        if not (isinstance(sums, list) and isinstance(pairs, list) and len(sums) == len(pairs) == len(self) + 1):
            return 0.0, 0.0
        return float(sums[position]), float(pairs[position])

    def _closest_walk(
        self,
        walk: Callable[[np.ndarray, np.random.Generator, WalkStats], list[list[int]]],
        used: np.ndarray,
        stream: Callable[[int], np.random.SeedSequence],
        positions: range,
    ) -> list[list[int]]:
        """The batches of the candidate walk that brings the epoch closest to ``target_hardness``.

        ``walk(used, rng, stats)`` grows one candidate from a copy of ``used`` (marking it), the
        batches at ``positions`` of the epoch; candidate ``r`` draws from ``stream(r)``. The
        epoch so far (``_history``), the candidate's batches and what the batches after them are
        expected to add (from the calibration's simulated epoch, :meth:`_expected_rest`) are
        measured together on the bank, on the references of the graph in use (a group that stops
        just before the epoch's last batch counts that batch itself, the indices its candidate
        leaves, when they are exactly the last batch's size), and the first
        candidate closest to :attr:`hardness_aim` is kept: its marks go to ``used`` and its
        counters to ``walk_stats``. ``stream(0)`` is the stream of a walk without candidates, so
        ``candidate_walks=1`` walks exactly as before.

        ``candidate_walks`` candidates are walked. If the group is the epoch's last choice
        (nothing later can make up for it: the last batch with ``replacement``, else the group
        of the second-to-last batch, since the last one takes what is left), the closest of them leaves
        the epoch farther than ``hardness_tolerance / 2`` from the aim, and the calibration found a
        setting within ``hardness_tolerance`` of it (an aim out of the graph's reach is not
        chased), more are walked, up to ``max_candidate_walks`` in all, until one is within
        ``hardness_tolerance / 2``. The inner half of the band is the aim because training on the
        epoch's batches moves the bank after they are chosen: an epoch walked near the band's edge
        leaves it with that drift (MUTAG at B = 128 did in 5 of 190 epochs). The loop is bounded
        by ``max_candidate_walks``.

        Choosing for the epoch so far lets a late group make up for an early one; counting the
        rest keeps an early group of an exactly-once epoch from taking the target for itself
        when the leftovers after it will be easier (choosing for the epoch so far alone left
        multi-group epochs under the target: IMDB-BINARY, the digits at B = 32).
        """
        # One candidate needs no references (a sampler without a target never measures them).
        vectors = self._reseed_vectors() if self.max_candidate_walks > 1 else None
        scale = self._graph_scale(vectors)
        if scale is None:
            return walk(used, np.random.default_rng(stream(0)), self.walk_stats)
        vectors, seen = _check_inputs(vectors, self.bank.seen)
        base_total, base_pairs = _pair_sums(vectors, self._history, seen)
        rest = self._rest_after(positions.stop)
        # When the group stops just before the last batch, that batch is what the candidate leaves
        # (if nothing is dropped): it is measured, not taken from the calibration's estimate.
        leftovers_known = not self.replacement and positions.stop == len(self) - 1
        last_size = self._batch_size_at(len(self) - 1) if leftovers_known else 0
        if not leftovers_known:
            base_total, base_pairs = base_total + rest[0], base_pairs + rest[1]
        last_choice = (len(self) - (1 if self.replacement else 2)) in positions
        limit = self.max_candidate_walks if last_choice and self._aim_within_reach() else self.candidate_walks
        best: tuple[float, list[list[int]], np.ndarray, WalkStats] | None = None
        for r in range(limit):
            # The last choice keeps half the band for the drift of the steps after it.
            if r >= self.candidate_walks and best[0] <= self.hardness_tolerance / 2:
                break
            trial, stats = used.copy(), WalkStats()
            batches = walk(trial, np.random.default_rng(stream(r)), stats)
            total, pairs = _pair_sums(vectors, batches, seen)
            if leftovers_known:
                left = np.flatnonzero(~trial)
                extra = _pair_sums(vectors, [left], seen) if left.size == last_size else rest
                total, pairs = total + extra[0], pairs + extra[1]
            value = scale.relative((base_total + total) / (base_pairs + pairs)) if base_pairs + pairs else math.nan
            distance = abs(value - self._hardness_aim) if math.isfinite(value) else math.inf
            if best is None or distance < best[0]:
                best = (distance, batches, trial, stats)
        _, batches, chosen, stats = best
        used[:] = chosen
        for name in ("steps", "restarts", "reseeds"):
            setattr(self.walk_stats, name, getattr(self.walk_stats, name) + getattr(stats, name))
        return batches

    def _aim_within_reach(self) -> bool:
        """Whether the graph in use was calibrated within ``hardness_tolerance`` of the aim."""
        hardness = self.graph.build_params.get("hardness") if self.graph is not None else None
        if not isinstance(hardness, dict):
            return False
        value, aim = hardness.get("relative_hardness"), hardness.get("aim")
        return value is not None and aim is not None and abs(float(value) - float(aim)) <= self.hardness_tolerance
