"""``BatchSampler(target_hardness=...)``: the search at every build, and its records and state.

:class:`HardnessTargetMixin` holds what a hardness target adds to :class:`~batchsampler.BatchSampler`:
the calibrated build (:func:`batchsampler.hardness.calibrate` over simulated epochs walked the
way the sampler walks), guided re-seeds' vectors, the per-epoch measurement
(``hardness_history``) and the checkpoint fields. It reads the walk settings of the sampler it
is mixed into (``max_fruitless_steps``, ``lockstep_batches``, ``symmetrize``, ...).
"""

from __future__ import annotations

import logging
import math
import numbers
from typing import Any

import numpy as np

from ._candidate_walks import CandidateWalksMixin
from ._hardness_settings import (
    SIMULATED_BATCHES,
    default_candidate_walks,
    default_max_candidate_walks,
)
from .collect import walk_batch
from .graph import ProximityGraph
from .hardness import (
    HardnessLadder,
    HardnessScale,
    _check_inputs,
    _pair_sums,
    calibrate,
    epoch_profile,
    hardness_scale,
)
from .walk import _walkers, grow_batches

__all__ = ["HardnessTargetMixin"]

logger = logging.getLogger("batchsampler.sampler")

# Seed-sequence words of the hardness machinery, apart from the epoch and graph streams.
_CALIBRATION_STREAM = 3
_MEASURE_STREAM = 4


class HardnessTargetMixin(CandidateWalksMixin):
    """What ``target_hardness`` and ``reseed_candidates`` add to a graph sampler (see the module)."""

    def _init_hardness(
        self, target_hardness: float | None, hardness_tolerance: float, calibration_builds: int,
        reseed_candidates: int, candidate_walks: int | None, drift_epochs: int, max_candidate_walks: int | None,
    ) -> None:
        self.target_hardness = target_hardness
        self.hardness_tolerance = hardness_tolerance
        self.calibration_builds = calibration_builds
        self.reseed_candidates = reseed_candidates
        self.candidate_walks = default_candidate_walks(len(self)) if candidate_walks is None else candidate_walks
        if max_candidate_walks is not None and max_candidate_walks < self.candidate_walks:
            default = "" if candidate_walks is not None else f", the default for {len(self)} batches an epoch"
            raise ValueError(
                f"max_candidate_walks must be >= candidate_walks ({self.candidate_walks}{default}), "
                f"got {max_candidate_walks}"
            )
        self.max_candidate_walks = (
            default_max_candidate_walks(self.candidate_walks) if max_candidate_walks is None else max_candidate_walks
        )
        self.drift_epochs = drift_epochs
        self._scale_of_graph: tuple[int, HardnessScale] | None = None
        self.hardness_history: list[dict[str, Any]] = []
        """One record per finished epoch with a ``target_hardness``: the epoch, the graph's
        ``k`` and ``m``, the measured ``relative_hardness`` (and ``by_part``: per quarter), the
        ``planned_hardness`` and the ``aim`` (see :meth:`measure_epoch_hardness`)."""
        self._hardness_drift: list[float] = []  # planned - measured, of the last drift_epochs epochs
        self._hardness_aim: float | None = target_hardness
        self._planned: tuple[int, float] | None = None  # (epoch, its hardness as walked)
        # (build seed's entropy, aim): the aim when the latest build was requested, so that a
        # background search aims where the main thread stood then, not when the thread runs.
        self._aim_of_build: tuple[tuple[int, ...], float] | None = None
        self._hardness_position: float | None = None  # where the next search starts
        self._history_epoch: int | None = None

    def _record_epoch_hardness(self, epoch: int, resumed: bool) -> None:
        """At the start of ``epoch``: measure the epoch that just ended into ``hardness_history``."""
        if self.target_hardness is not None and not resumed and self._history_epoch not in (None, epoch):
            record = self.measure_epoch_hardness()
            if record is not None:
                self.hardness_history.append(record)
                logger.info(
                    "epoch %d: relative hardness %.3f (target %.2f, aim %.3f), k=%d, m=%d", record["epoch"],
                    record["relative_hardness"], self.target_hardness, record["aim"], record["k"], record["m"],
                )
                self._correct_for_drift(record)
        self._history_epoch = epoch

    @property
    def hardness_aim(self) -> float | None:
        """What the searches and candidate walks aim at: ``target_hardness`` plus the mean gap
        (planned minus measured hardness) of the last ``drift_epochs`` measured epochs, clipped
        to ``[0, 1]``; the target itself with ``drift_epochs=0``; ``None`` without a target.

        Training on a batch pulls its members apart, so an epoch measured after it was trained
        on is easier than when it was walked. Where that gap is steady, aiming above the target
        by it lands the measurement on the target; where it is noise, aiming at it adds noise.
        """
        return self._hardness_aim

    @property
    def planned_hardness(self) -> float | None:
        """Relative hardness of the current (or last) epoch's batches as walked: measured when
        its last batch was produced, on the bank and references the walk used. ``None`` before
        that, without a target, or for an epoch whose last batch was replayed from a checkpoint."""
        # _history_epoch is the epoch whose batches _history holds, until the next one starts.
        if self._planned is None or self._planned[0] != self._history_epoch:
            return None
        return self._planned[1]

    def _correct_for_drift(self, record: dict[str, Any]) -> None:
        planned, measured = record.get("planned_hardness"), record.get("relative_hardness")
        if self.drift_epochs == 0 or planned is None or measured is None or not math.isfinite(measured):
            return
        self._hardness_drift = [*self._hardness_drift, float(planned) - float(measured)][-self.drift_epochs:]
        self._hardness_aim = float(np.clip(self.target_hardness + np.mean(self._hardness_drift), 0.0, 1.0))

    def _plan_epoch(self, epoch: int, batches: list[list[int]]) -> None:
        """Record ``batches`` (the whole epoch, as walked) as ``epoch``'s planned hardness."""
        vectors = self._reseed_vectors()
        scale = self._graph_scale(vectors)
        if scale is None:
            return
        vectors, seen = _check_inputs(vectors, self.bank.seen)
        total, pairs = _pair_sums(vectors, batches, seen)
        value = scale.relative(total / pairs) if pairs else math.nan
        if math.isfinite(value):
            self._planned = (epoch, float(value))

    @property
    def _shards_background_builds(self) -> bool:
        # A search builds several graphs and keeps one: each rank makes the same search itself.
        return self.target_hardness is None

    def _next_build_seed(self) -> np.random.SeedSequence:
        seed = super()._next_build_seed()
        if self.target_hardness is not None:
            self._aim_of_build = (tuple(seed.entropy), self._hardness_aim)
        return seed

    def _calibrated_graph(self, embeddings: Any, seen: np.ndarray, seed: np.random.SeedSequence) -> ProximityGraph:
        """The graph of the setting whose simulated epoch is closest to :attr:`hardness_aim`
        as it was when the build was requested.

        Runs where the build runs (possibly the background thread): it reads only settings,
        the aim recorded with the build's seed, and the search's start, which changes at a
        graph swap, in the main thread, when no build is pending.
        """
        requested = self._aim_of_build
        aim = requested[1] if requested is not None and requested[0] == tuple(seed.entropy) else self.target_hardness
        vectors = np.asarray(embeddings.cpu() if hasattr(embeddings, "cpu") else embeddings, dtype=np.float32)
        mask = None if seen.all() else seen
        num_seen = int(seen.sum())
        ladder = HardnessLadder(
            k=min(self.k, num_seen - 1), max_m=max(min(num_seen - 1, 4 * self.m), self.k),
            min_k=max(1, min(self.k, num_seen - 1, self.global_batch_size // 4)),
        )
        start = self._hardness_position if self._hardness_position is not None else ladder.position(self.k, self.m)
        words = [int(word) for word in seed.generate_state(2)]
        restart_prob = self.current_restart_prob

        def build(k: int, m: int) -> ProximityGraph:
            graph = ProximityGraph.build(
                embeddings, k, m, seed=seed, mask=mask, num_threads=self.num_threads, backend="random",
                index_params=self.index_params, device=self.bank.build_device,
            )
            return graph.symmetrize() if self.symmetrize else graph

        # Each setting's simulated epoch, kept where the candidate walks count the rest of an epoch.
        counts_rest = self.max_candidate_walks > 1 and not self.replacement
        simulated: dict[tuple[int, int], list[list[int]]] = {}

        def simulate(graph: ProximityGraph) -> list[list[int]]:
            rng = np.random.default_rng([self.seed, _CALIBRATION_STREAM, *words])
            batches = self._walk_epoch(graph, vectors, restart_prob, rng)
            if counts_rest:
                simulated[(int(graph.build_params["k"]), int(graph.build_params["m"]))] = batches
            return batches

        graph, search, scale = calibrate(
            build, simulate, vectors, self.global_batch_size, ladder, aim, self.hardness_tolerance,
            np.random.default_rng([self.seed, _MEASURE_STREAM, *words]), valid=seen, start=start,
            max_evaluations=self.calibration_builds,
        )
        graph.build_params["hardness"] = {
            "aim": aim, "position": search.position, "relative_hardness": _finite_or_none(search.relative_hardness),
            "evaluations": len(search.tried), "uniform": scale.uniform, "knn": scale.knn,
        }
        if (search.k, search.m) in simulated:
            graph.build_params["hardness"].update(self._expected_rest(simulated[(search.k, search.m)], vectors, seen))
        if not math.isfinite(search.relative_hardness):
            logger.warning("target_hardness: the bank has no structure to measure hardness on; kept k=%d, m=%d",
                           search.k, search.m)
        elif abs(search.relative_hardness - aim) > self.hardness_tolerance:
            logger.warning(
                "target_hardness %.2f (aim %.3f) out of reach: the closest setting (k=%d, m=%d) gives %.3f",
                self.target_hardness, aim, search.k, search.m, search.relative_hardness,
            )
        return graph

    def _walk_epoch(
        self, graph: ProximityGraph, vectors: np.ndarray, restart_prob: float, rng: np.random.Generator
    ) -> list[list[int]]:
        """Batches walked on ``graph`` as this sampler walks an epoch (groups, walkers, re-seeds):
        the epoch, repeated when it is shorter than 256 batches (at most 64 times), so that the
        estimate rests on about 256 batches whatever ``N / B`` is; 256 independent batches with
        ``replacement``."""
        total = len(self)
        if self.replacement:  # independent batches: a sample of them is the epoch's distribution
            used = np.zeros(self.num_instances, dtype=bool)
            batches = []
            for _ in range(SIMULATED_BATCHES):
                used[:] = False
                batches.append(walk_batch(graph, used, self.global_batch_size, restart_prob, rng,
                                          max_fruitless_steps=self.max_fruitless_steps))
            return batches
        batches: list[list[int]] = []
        walkers = _walkers(self.lockstep_batches, total)
        for _ in range(min(64, -(-SIMULATED_BATCHES // max(total, 1)))):
            used = np.zeros(self.num_instances, dtype=bool)
            for first in range(0, total, self.lockstep_batches):
                sizes = [self._batch_size_at(i) for i in range(first, min(total, first + self.lockstep_batches))]
                batches += grow_batches(
                    graph, used, sizes, restart_prob, rng, max_fruitless_steps=self.max_fruitless_steps,
                    num_walkers=walkers, vectors=vectors if self.reseed_candidates else None,
                    reseed_candidates=self.reseed_candidates,
                )
        return batches

    def _graph_scale(self, vectors: np.ndarray | None) -> HardnessScale | None:
        """The references of relative hardness for the graph in use: those its calibration
        measured, else measured once per graph on the bank (``None`` without a bank)."""
        if vectors is None or self.bank.num_seen < 2:
            return None
        hardness = self.graph.build_params.get("hardness") if self.graph is not None else None
        if isinstance(hardness, dict) and hardness.get("uniform") is not None and hardness.get("knn") is not None:
            return HardnessScale(uniform=float(hardness["uniform"]), knn=float(hardness["knn"]))
        if self._scale_of_graph is None or self._scale_of_graph[0] != self.graph_version:
            rng = np.random.default_rng([self.seed, _MEASURE_STREAM, self.graph_version])
            scale = hardness_scale(vectors, max(2, self.global_batch_size), rng, valid=self.bank.seen)
            self._scale_of_graph = (self.graph_version, scale)
        return self._scale_of_graph[1]

    def set_graph(self, graph: ProximityGraph) -> None:
        super().set_graph(graph)
        params = graph.build_params
        self.refresh_stats.k = int(params.get("k") or 0)
        self.refresh_stats.m = int(params.get("m") or 0)
        hardness = params.get("hardness")
        if isinstance(hardness, dict):
            self.refresh_stats.calibration_builds += int(hardness.get("evaluations", 1)) - 1
            value = hardness.get("relative_hardness")
            self.refresh_stats.relative_hardness = float("nan") if value is None else float(value)
            self._hardness_position = float(hardness["position"])

    def _reseed_vectors(self) -> np.ndarray | None:
        """The bank's rows as they are now, float32 on the host (:meth:`EmbeddingBank.host_float32
        <batchsampler.bank.EmbeddingBank.host_float32>`): the same rows on a CPU or device bank,
        so that a seed walks the same batches wherever the bank lives."""
        return self.bank.host_float32()

    def measure_epoch_hardness(self) -> dict[str, Any] | None:
        """Relative hardness of the batches produced in the current (or last) epoch, on the bank now.

        Returns ``{"epoch", "k", "m", "graph_version", "target_hardness", "aim",
        "planned_hardness", "relative_hardness", "similarity", "by_part", "scale"}``
        (``graph_version``: of the graph the epoch started with, 0 for an epoch of uniform
        batches before the first graph; ``aim``: the :attr:`hardness_aim` the epoch was walked
        with; ``planned_hardness``: :attr:`planned_hardness`, ``None`` when unknown; ``by_part``:
        per quarter of the epoch), or ``None`` before the first batch or with fewer than two seen
        rows. Costs one measurement of the references
        (:func:`~batchsampler.hardness.hardness_scale`) plus at most 256 batches' pairs.
        """
        vectors = self._reseed_vectors()
        if vectors is None or not self._history or self.bank.num_seen < 2 or self._history_epoch is None:
            return None
        rng = np.random.default_rng([self.seed, _MEASURE_STREAM, self._history_epoch])
        seen = self.bank.seen
        profile = epoch_profile(vectors, self._history, self.global_batch_size, rng, valid=seen)
        return {
            "epoch": self._history_epoch, "k": self.refresh_stats.k or self.k, "m": self.refresh_stats.m or self.m,
            # The graph the epoch started with (0: none, a uniform warm-up epoch); k and m are
            # those of the graph in use now (a refresh at the epoch's end has already chosen anew).
            "graph_version": self._epoch_start_version, "target_hardness": self.target_hardness,
            "aim": self._hardness_aim, "planned_hardness": self.planned_hardness, **profile,
        }

    def _extra_state(self) -> dict[str, Any]:
        state = {**super()._extra_state(), "hardness_position": self._hardness_position}
        if self.target_hardness is not None:  # a sampler without a target keeps its flat state
            state.update(hardness_drift=list(self._hardness_drift), hardness_aim=self._hardness_aim,
                         planned_hardness=None if self._planned is None else list(self._planned))
        return state

    def _check_extra_state(self, state: dict[str, Any], where: str) -> dict[str, Any]:
        checked = super()._check_extra_state(state, where)
        position = state.get("hardness_position")
        if position is not None and (
            isinstance(position, bool) or not isinstance(position, numbers.Real) or not math.isfinite(position)
            or position < 0
        ):
            raise ValueError(f"{where} field 'hardness_position' must be None or a finite number >= 0, got {position!r}")
        checked["hardness_position"] = None if position is None else float(position)
        drift = state.get("hardness_drift", [])
        if not isinstance(drift, list | tuple) or not all(_finite_real(value) for value in drift):
            raise ValueError(f"{where} field 'hardness_drift' must be a list of finite numbers, got {drift!r}")
        checked["hardness_drift"] = [float(value) for value in drift][-self.drift_epochs:] if self.drift_epochs else []
        aim = state.get("hardness_aim", self.target_hardness)
        if (aim is None) != (self.target_hardness is None) or (aim is not None and not (
                _finite_real(aim) and 0 <= aim <= 1)):
            raise ValueError(f"{where} field 'hardness_aim' must be a number in [0, 1] with a target_hardness "
                             f"and None without one, got {aim!r}")
        checked["hardness_aim"] = None if aim is None else float(aim)
        planned = state.get("planned_hardness")
        if planned is not None and not (
            isinstance(planned, list | tuple) and len(planned) == 2 and isinstance(planned[0], numbers.Integral)
            and not isinstance(planned[0], bool) and _finite_real(planned[1])
        ):
            raise ValueError(f"{where} field 'planned_hardness' must be None or [epoch, value], got {planned!r}")
        checked["planned_hardness"] = None if planned is None else (int(planned[0]), float(planned[1]))
        return checked

    def _apply_extra_state(self, checked: dict[str, Any], *, trusted: bool) -> None:
        # As the refresh clock: a loaded checkpoint that holds this position keeps its own.
        if trusted or not self._resumes_from_checkpoint(checked["epoch"], checked["position"]):
            self._hardness_position = checked["hardness_position"]
        self._hardness_drift = checked["hardness_drift"]
        self._hardness_aim = checked["hardness_aim"]
        self._planned = checked["planned_hardness"]
        super()._apply_extra_state(checked, trusted=trusted)

    def _save_extra(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        super()._save_extra(arrays, meta)
        meta["hardness_history"] = self.hardness_history

    def _check_extra(self, data: dict[str, np.ndarray], meta: dict[str, Any], where: str) -> dict[str, Any]:
        checked = super()._check_extra(data, meta, where)
        history = meta.get("hardness_history", [])
        if not isinstance(history, list) or not all(isinstance(entry, dict) for entry in history):
            raise ValueError(f"{where}: metadata field 'hardness_history' must be a list of records")
        checked["hardness_history"] = [dict(entry) for entry in history]
        return checked

    def _apply_extra(self, checked: dict[str, Any]) -> None:
        super()._apply_extra(checked)
        self.hardness_history = checked["hardness_history"]


def _finite_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None
