"""BatchSampler: mini-batches of hard-to-distinguish instances by random walk with restart."""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Callable
from typing import Any

import numpy as np

from ._validation import check_int, check_probability
from .base import EPOCH_STREAM, check_bool
from .collect import walk_batch
from .graph import ProximityGraph
from .graph_sampler import GraphBatchSampler
from .hardness import HardnessLadder, calibrate, epoch_profile, hardness_scale
from .walk import _walkers, grow_batches

logger = logging.getLogger(__name__)

DEFAULT_RESEED_CANDIDATES = 32
"""Candidates of a guided re-seed when ``target_hardness`` is set and ``reseed_candidates`` is not."""

# Seed-sequence words of the hardness machinery, apart from the epoch and graph streams.
_CALIBRATION_STREAM = 3
_SIMULATED_BATCHES = 256  # batches a simulated epoch measures hardness on (see hardness._spread)
_MEASURE_STREAM = 4

__all__ = ["BatchSampler", "decayed_restart_prob", "scaled_graph_size"]


def scaled_graph_size(num_instances: int, k: int | None = None, m: int | None = None) -> tuple[int, int]:
    """``(k, m)`` for ``num_instances``: the paper's K = 100, M = 1000, scaled to small datasets.

    ``k = min(100, N // 10)`` neighbours among ``m = min(1000, N // 2)`` candidates (at least 1
    and ``k``), i.e. the paper's values from N = 2000 on and the same proportions below. A
    ``k`` or ``m`` given is kept as is. The integrations use it for every dataset.

    Raises:
        ValueError: if ``num_instances < 2``.
    """
    num_instances = check_int("num_instances", num_instances, low=2)
    k = k if k is not None else max(1, min(100, num_instances // 10))
    m = m if m is not None else max(k, min(1000, num_instances // 2))
    return k, m


def decayed_restart_prob(restart_prob: float, epoch: int) -> float:
    """The authors' schedule: ``max(0.05, restart_prob - 0.02 * epoch)``."""
    return max(0.05, restart_prob - 0.02 * epoch)


class BatchSampler(GraphBatchSampler):
    r"""Batches of hard negatives that are not false negatives (Yang et al., KDD 2023).

    A :class:`~batchsampler.ProximityGraph` links every instance to the ``k`` most similar of
    ``m`` random candidates; each batch is collected by a random walk with restart from a random
    seed (see :mod:`batchsampler.walk`). Before the first graph exists (no embeddings yet),
    batches are uniform: train a warm-up epoch, feeding embeddings back with :meth:`update`,
    then call :meth:`refresh`.

    Example::

        sampler = BatchSampler(len(dataset), batch_size=256, seed=0)
        loader = DataLoader(dataset, batch_sampler=sampler)
        for epoch in range(epochs):
            for indices, x in loader:           # the dataset returns (index, sample)
                z = model(x)
                sampler.update(indices, z)     # cheap: copies to the CPU bank
                ...
            sampler.refresh()                  # rebuild the graph from fresh embeddings

    Args:
        data: the number of instances ``N``, or a sized dataset.
        batch_size: ``B``, in ``[1, N]``.
        k: out-degree of the graph (default 100, the paper's K), ``1 <= k < N``.
        m: random candidates per node (default 1000, the paper's M), ``m >= k``. Smaller ``m``
            gives easier batches with fewer false negatives; ``m >= N - 1`` is the kNN graph.
        restart_prob: alpha in ``[0, 1]`` (default 0.2). Larger keeps batches tighter (harder).
        restart_prob_schedule: ``"constant"`` (default), ``"decay"`` (the authors' code:
            ``max(0.05, restart_prob - 0.02 * epoch)``) or a callable ``epoch -> alpha``.
        replacement: ``False``: every index exactly once per epoch; ``True``: independent
            batches of ``B`` distinct indices (closer to the authors' code).
        drop_last: drop the smaller last batch (``N // B`` batches instead of ``ceil(N / B)``).
        seed: non-negative int; same (seed, epoch, embeddings) gives the same batches.
        embeddings: optional ``[N, d]`` initial embeddings; the graph is built at construction.
        max_fruitless_steps: steps without a new instance before the walk re-seeds (default 64).
        symmetrize: make the graph undirected before walking.
        lockstep_batches: batches walked together (default 16): one walker per batch, advanced
            in lock-step, so that memory latency overlaps (about 5x faster at a million
            instances, ``benchmarks/RESULTS.md``). At most one walker per 8 batches of the epoch, so short epochs stay close
            to one walk after another. A new graph (from a refresh) is walked from the next
            group on; 1 walks batch by batch. Part of the seeded result.
        refresh_every, warmup_epochs, background, swap_delay, num_threads: the refresh policy,
            see :class:`~batchsampler.graph_sampler.GraphBatchSampler` (default: refresh only
            when :meth:`refresh` is called; background builds).
        backend, index_params: graph construction (default ``"random"``, the paper's graph;
            ``"hnsw"`` / ``"ivf"`` / ``"exact"`` for the true neighbourhood), see
            :meth:`ProximityGraph.build`.
        device: where the bank lives and graphs are built (``None``: the device of the
            tensors given to the first :meth:`update`, the CPU for arrays; a CUDA device keeps
            the bank and the build on that GPU), see
            :class:`~batchsampler.graph_sampler.GraphBatchSampler`.
        distributed, bank_dtype: see :class:`~batchsampler.base.BaseBatchSampler`.
        target_hardness: ``None`` (default): batches as hard as fixed ``k``/``m`` make them.
            A value in ``[0, 1]``: the relative hardness to hold (0: uniform batches, 1: exact
            kNN batches, measured on the bank; see :mod:`batchsampler.hardness`). At every graph
            build the sampler measures both references on the bank, then chooses ``m`` (and,
            past the largest ``m``, a smaller ``k``) by bisection so that an epoch walked on the
            new graph, late batches included, lands within ``hardness_tolerance / 2`` of the
            target. ``k`` and ``m`` are the starting point; the choice is in
            ``refresh_stats`` (``k``, ``m``, ``relative_hardness``) and every epoch's measured
            value in :attr:`hardness_history`. Needs ``backend="random"``. A search costs up to
            ``calibration_builds`` graph builds (one when the bank has not drifted), made on
            every rank: with a target, background builds are not sharded.
        hardness_tolerance: the band around the target, in ``(0, 1]`` (default 0.1).
        calibration_builds: most builds per search, ``>= 1`` (default 6).
        reseed_candidates: ``c >= 0``: a walk that stalls (every neighbour used, as most are
            late in an exactly-once epoch) re-seeds at the unused instance most similar to its
            batch's first seed among ``c`` random unused ones, instead of a random one, so late
            batches stay hard (see :func:`~batchsampler.walk.grow_batches`). ``None`` (default):
            32 with a ``target_hardness``, else 0 (random re-seeds, the paper's walk).

    Raises:
        ValueError: ``batch_size`` outside ``[1, N]``, ``k < 1``, ``k >= N``, ``m < k``,
            ``restart_prob`` outside ``[0, 1]``, an unknown ``restart_prob_schedule``,
            ``max_fruitless_steps < 1``, ``lockstep_batches < 1``, bad refresh settings, bad
            ``embeddings`` (non-2-D, NaN/inf, row count other than ``N``), ``target_hardness``
            outside ``[0, 1]`` or with another backend than ``"random"``,
            ``hardness_tolerance`` outside ``(0, 1]``, ``calibration_builds < 1`` or
            ``reseed_candidates < 0``.
        TypeError: non-integer sizes or non-bool flags.
    """

    def __init__(
        self,
        data: Any,
        batch_size: int,
        *,
        k: int = 100,
        m: int = 1000,
        restart_prob: float = 0.2,
        restart_prob_schedule: str | Callable[[int], float] = "constant",
        replacement: bool = False,
        drop_last: bool = False,
        seed: int = 0,
        embeddings: Any = None,
        max_fruitless_steps: int = 64,
        symmetrize: bool = False,
        lockstep_batches: int = 16,
        refresh_every: int | None = None,
        warmup_epochs: int = 1,
        background: bool = True,
        swap_delay: int = 8,
        num_threads: int | None = None,
        backend: str = "random",
        index_params: dict[str, Any] | None = None,
        distributed: bool | None = None,
        bank_dtype: Any = np.float32,
        device: Any = None,
        target_hardness: float | None = None,
        hardness_tolerance: float = 0.1,
        calibration_builds: int = 6,
        reseed_candidates: int | None = None,
    ) -> None:
        if target_hardness is not None:
            target_hardness = check_probability("target_hardness", target_hardness)
            if backend != "random":
                raise ValueError(
                    f"target_hardness tunes the random backend's candidates m: use backend='random', got {backend!r}"
                )
        if isinstance(hardness_tolerance, bool) or not isinstance(hardness_tolerance, numbers.Real) or not (
            0 < hardness_tolerance <= 1
        ):
            raise ValueError(f"hardness_tolerance must be a number in (0, 1], got {hardness_tolerance!r}")
        calibration_builds = check_int("calibration_builds", calibration_builds, low=1)
        if reseed_candidates is None:
            reseed_candidates = DEFAULT_RESEED_CANDIDATES if target_hardness is not None else 0
        reseed_candidates = check_int("reseed_candidates", reseed_candidates, low=0)
        super().__init__(
            data, batch_size, k=k, m=m, refresh_every=refresh_every, warmup_epochs=warmup_epochs,
            background=background, swap_delay=swap_delay, num_threads=num_threads,
            backend=backend, index_params=index_params,
            replacement=replacement, drop_last=drop_last, seed=seed, embeddings=embeddings,
            distributed=distributed, bank_dtype=bank_dtype, device=device,
        )
        self.restart_prob = check_probability("restart_prob", restart_prob)
        if restart_prob_schedule not in ("constant", "decay") and not callable(restart_prob_schedule):
            raise ValueError(
                f"restart_prob_schedule must be 'constant', 'decay' or a callable, got {restart_prob_schedule!r}"
            )
        self.restart_prob_schedule = restart_prob_schedule
        self.current_restart_prob = self.restart_prob
        self.max_fruitless_steps = check_int("max_fruitless_steps", max_fruitless_steps, low=1)
        self.symmetrize = check_bool("symmetrize", symmetrize)
        self.lockstep_batches = check_int("lockstep_batches", lockstep_batches, low=1)
        self.target_hardness = target_hardness
        self.hardness_tolerance = float(hardness_tolerance)
        self.calibration_builds = calibration_builds
        self.reseed_candidates = reseed_candidates
        self.hardness_history: list[dict[str, Any]] = []
        """One record per finished epoch with a ``target_hardness``: the epoch, the graph's
        ``k`` and ``m``, the measured ``relative_hardness`` (and ``by_part``: per quarter)."""
        self._hardness_position: float | None = None  # where the next search starts
        self._history_epoch: int | None = None
        self._host_vectors: tuple[int, np.ndarray] | None = None
        self._finish_init()

    @classmethod
    def from_graph(cls, graph: ProximityGraph, batch_size: int, **kwargs: Any) -> BatchSampler:
        """A sampler that walks an existing ``graph`` (built offline, or loaded from a file).

        ``k`` and ``m`` default to the graph's build parameters; they only matter for later
        :meth:`refresh` calls. Other keyword arguments as in the constructor.
        """
        if not isinstance(graph, ProximityGraph):
            raise TypeError(f"graph must be a ProximityGraph, got {type(graph).__name__}")
        k = graph.build_params.get("k") or max(1, min(int(graph.degrees.max()), graph.num_nodes - 1))
        kwargs.setdefault("k", k)
        kwargs.setdefault("m", max(graph.build_params.get("m") or kwargs["k"], kwargs["k"]))
        sampler = cls(graph.num_nodes, batch_size, **kwargs)
        sampler.set_graph(graph)
        return sampler

    def _build_graph(
        self, embeddings: np.ndarray, seen: np.ndarray, seed: np.random.SeedSequence, *, sharded: bool = False
    ) -> ProximityGraph:
        if self.target_hardness is not None:
            return self._calibrated_graph(embeddings, seen, seed)
        graph = super()._build_graph(embeddings, seen, seed, sharded=sharded)
        return graph.symmetrize() if self.symmetrize else graph

    @property
    def _shards_background_builds(self) -> bool:
        # A search builds several graphs and keeps one: each rank makes the same search itself.
        return self.target_hardness is None

    def _calibrated_graph(self, embeddings: Any, seen: np.ndarray, seed: np.random.SeedSequence) -> ProximityGraph:
        """The graph of the setting whose simulated epoch is closest to ``target_hardness``.

        Runs where the build runs (possibly the background thread): it reads only settings
        and the search's start, which changes at a graph swap, in the main thread, when no
        build is pending.
        """
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

        def simulate(graph: ProximityGraph) -> list[list[int]]:
            rng = np.random.default_rng([self.seed, _CALIBRATION_STREAM, *words])
            return self._walk_epoch(graph, vectors, restart_prob, rng)

        graph, search, scale = calibrate(
            build, simulate, vectors, self.global_batch_size, ladder, self.target_hardness, self.hardness_tolerance,
            np.random.default_rng([self.seed, _MEASURE_STREAM, *words]), valid=seen, start=start,
            max_evaluations=self.calibration_builds,
        )
        graph.build_params["hardness"] = {
            "position": search.position, "relative_hardness": _finite_or_none(search.relative_hardness),
            "evaluations": len(search.tried), "uniform": scale.uniform, "knn": scale.knn,
        }
        if not math.isfinite(search.relative_hardness):
            logger.warning("target_hardness: the bank has no structure to measure hardness on; kept k=%d, m=%d",
                           search.k, search.m)
        elif abs(search.relative_hardness - self.target_hardness) > self.hardness_tolerance:
            logger.warning(
                "target_hardness %.2f out of reach: the closest setting (k=%d, m=%d) gives %.3f",
                self.target_hardness, search.k, search.m, search.relative_hardness,
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
            for _ in range(_SIMULATED_BATCHES):
                used[:] = False
                batches.append(walk_batch(graph, used, self.global_batch_size, restart_prob, rng,
                                          max_fruitless_steps=self.max_fruitless_steps))
            return batches
        batches: list[list[int]] = []
        walkers = _walkers(self.lockstep_batches, total)
        for _ in range(min(64, -(-_SIMULATED_BATCHES // max(total, 1)))):
            used = np.zeros(self.num_instances, dtype=bool)
            for first in range(0, total, self.lockstep_batches):
                sizes = [self._batch_size_at(i) for i in range(first, min(total, first + self.lockstep_batches))]
                batches += grow_batches(
                    graph, used, sizes, restart_prob, rng, max_fruitless_steps=self.max_fruitless_steps,
                    num_walkers=walkers, vectors=vectors if self.reseed_candidates else None,
                    reseed_candidates=self.reseed_candidates,
                )
        return batches

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
        """The bank as float32 host rows for guided re-seeds: the bank itself when it is one,
        else a copy taken when the graph in use was swapped in."""
        bank = self.bank
        if bank.embeddings is None:
            return None
        if not bank.on_device and bank.dtype == np.float32:
            return bank.embeddings
        if self._host_vectors is None or self._host_vectors[0] != self.graph_version:
            self._host_vectors = (self.graph_version, np.asarray(bank.numpy(), dtype=np.float32))
        return self._host_vectors[1]

    def measure_epoch_hardness(self) -> dict[str, Any] | None:
        """Relative hardness of the batches produced in the current (or last) epoch, on the bank now.

        Returns ``{"epoch", "k", "m", "target_hardness", "relative_hardness", "similarity",
        "by_part", "scale"}`` (``by_part``: per quarter of the epoch), or ``None`` before the
        first batch or with fewer than two seen rows. Costs one measurement of the references
        (:func:`~batchsampler.hardness.hardness_scale`) plus at most 256 batches' pairs.
        """
        vectors = self._reseed_vectors()
        if vectors is None or not self._history or self.bank.num_seen < 2 or self._history_epoch is None:
            return None
        rng = np.random.default_rng([self.seed, _MEASURE_STREAM, self._history_epoch])
        seen = self.bank.seen
        scale = hardness_scale(vectors, max(2, self.global_batch_size), rng, valid=seen)
        profile = epoch_profile(vectors, self._history, scale, valid=seen)
        return {
            "epoch": self._history_epoch, "k": self.refresh_stats.k or self.k, "m": self.refresh_stats.m or self.m,
            "graph_version": self.graph_version, "target_hardness": self.target_hardness, **profile,
        }

    def _rank_invariants(self) -> dict[str, Any]:
        schedule = self.restart_prob_schedule
        return {
            **super()._rank_invariants(),
            "restart_prob": self.restart_prob,
            "restart_prob_schedule": schedule if isinstance(schedule, str) else "callable",
            "max_fruitless_steps": self.max_fruitless_steps, "symmetrize": self.symmetrize,
            "lockstep_batches": self.lockstep_batches, "target_hardness": self.target_hardness,
            "hardness_tolerance": self.hardness_tolerance, "calibration_builds": self.calibration_builds,
            "reseed_candidates": self.reseed_candidates,
        }

    def _on_epoch_start(self, epoch: int, resumed: bool) -> None:
        if self.target_hardness is not None and not resumed and self._history_epoch not in (None, epoch):
            record = self.measure_epoch_hardness()
            if record is not None:
                self.hardness_history.append(record)
                logger.info(
                    "epoch %d: relative hardness %.3f (target %.2f), k=%d, m=%d", record["epoch"],
                    record["relative_hardness"], self.target_hardness, record["k"], record["m"],
                )
        self._history_epoch = epoch
        super()._on_epoch_start(epoch, resumed)
        self.current_restart_prob = self.restart_prob_at(epoch)

    def restart_prob_at(self, epoch: int) -> float:
        """Alpha used in ``epoch`` under ``restart_prob_schedule``.

        Raises:
            ValueError: if a callable schedule returns a value outside ``[0, 1]``.
        """
        if self.restart_prob_schedule == "constant":
            return self.restart_prob
        if self.restart_prob_schedule == "decay":
            return decayed_restart_prob(self.restart_prob, epoch)
        return check_probability("restart_prob_schedule(epoch)", self.restart_prob_schedule(epoch))

    def _collect_from_graph(
        self, graph: ProximityGraph, used: np.ndarray, size: int, rng: np.random.Generator
    ) -> list[int]:
        return walk_batch(
            graph, used, size, self.current_restart_prob, rng,
            max_fruitless_steps=self.max_fruitless_steps, stats=self.walk_stats,
        )

    def _collect_group(self, used: np.ndarray, sizes: list[int], epoch: int, first: int) -> list[list[int]]:
        if self.graph is None or (len(sizes) == 1 and not self.reseed_candidates):
            return super()._collect_group(used, sizes, epoch, first)
        # The group's own stream; the trailing length keeps it apart from batch ``first``'s.
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, EPOCH_STREAM, epoch, first, len(sizes)]))
        return grow_batches(
            self.graph, used, sizes, self.current_restart_prob, rng,
            max_fruitless_steps=self.max_fruitless_steps,
            num_walkers=_walkers(self.lockstep_batches, len(self)), stats=self.walk_stats,
            vectors=self._reseed_vectors() if self.reseed_candidates else None,
            reseed_candidates=self.reseed_candidates,
        )

    def _extra_state(self) -> dict[str, Any]:
        return {**super()._extra_state(), "hardness_position": self._hardness_position}

    def _check_extra_state(self, state: dict[str, Any], where: str) -> dict[str, Any]:
        checked = super()._check_extra_state(state, where)
        position = state.get("hardness_position")
        if position is not None and (
            isinstance(position, bool) or not isinstance(position, numbers.Real) or not math.isfinite(position)
            or position < 0
        ):
            raise ValueError(f"{where} field 'hardness_position' must be None or a finite number >= 0, got {position!r}")
        checked["hardness_position"] = None if position is None else float(position)
        return checked

    def _apply_extra_state(self, checked: dict[str, Any], *, trusted: bool) -> None:
        # As the refresh clock: a loaded checkpoint that holds this position keeps its own.
        if trusted or not self._resumes_from_checkpoint(checked["epoch"], checked["position"]):
            self._hardness_position = checked["hardness_position"]
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

    def __repr__(self) -> str:
        return (
            f"{super().__repr__()[:-1]}, k={self.k}, m={self.m}, restart_prob={self.restart_prob}, "
            f"graph_version={self.graph_version})"
        )


def _finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None
