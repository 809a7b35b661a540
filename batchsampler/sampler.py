"""BatchSampler: mini-batches of hard-to-distinguish instances by random walk with restart."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ._hardness_settings import DEFAULT_DRIFT_EPOCHS, check_hardness_settings
from ._hardness_target import HardnessTargetMixin
from ._validation import check_int, check_probability
from .base import EPOCH_STREAM, check_bool
from .collect import walk_batch
from .graph import ProximityGraph
from .graph_sampler import GraphBatchSampler
from .walk import WalkStats, _walkers, grow_batches

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


class BatchSampler(HardnessTargetMixin, GraphBatchSampler):
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
        candidate_walks: with a ``target_hardness``, each group of ``lockstep_batches`` batches
            (each batch, with ``replacement``) is walked this many times from the same state,
            each from its own stream, and the walk that brings the epoch closest to the target
            is kept: the epoch so far, the candidate, and (exactly-once epochs) what the later
            batches are expected to add, from the calibration's simulated epoch (the last batch
            itself, what the candidate leaves, when the group stops just before it); measured on
            the bank (``O(B d)`` per batch). The calibration makes
            the target the epoch's *expected* hardness; the choice removes the spread of short
            epochs, whose handful of batches is a noisy average. ``None`` (default):
            ``clip(ceil(256 / len(sampler)), 1, 8)`` with a target (1 from 256 batches per
            epoch on), 1 without one. Deterministic: the same seed, epoch and bank give the
            same choice on every rank and in every iteration.
        drift_epochs: ``>= 0`` (default 0: off). Training on a batch pulls its members apart, so an
            epoch measured at its end is easier than when it was walked. With a target, each
            epoch's hardness as walked (:attr:`planned_hardness`) is compared with its
            measurement in :attr:`hardness_history`, and the candidate walks aim at the target
            plus the mean difference of the last ``drift_epochs`` epochs
            (:attr:`hardness_aim`, recorded as ``aim``); 0 aims at the target itself. A build
            aims where the sampler stood when it was requested, so background builds stay
            deterministic. The gap is measured, not assumed: on a bank that does not move
            the aim stays at the target, up to measurement noise. Off by default: on GraphCL/MUTAG
            and SimCLR the gap is mostly noise plus one large first walked epoch, and aiming
            for the last 3 epochs' gap widened the spread of the measured epochs.
        max_candidate_walks: with a ``target_hardness``, the most candidate walks of the epoch's
            last choice (the group of its second-to-last batch; the last batch with
            ``replacement``): when its ``candidate_walks`` all leave the epoch farther than
            ``hardness_tolerance / 2`` from the aim, more are walked, up to this many, until one
            is within ``hardness_tolerance / 2``; none when the graph's calibration did not come
            within ``hardness_tolerance`` of the aim (an aim out of reach is not chased). The
            other half of the band is left for what training on the epoch's batches does to the
            bank after they are chosen. ``None`` (default): ``8 * candidate_walks`` when
            ``candidate_walks > 1``, else 1. Epochs the candidates land in the band's inner half
            are walked exactly as without extra walks; the rescue matters for short epochs of
            large batches (a batch a large share of ``N``), where one walk's relative hardness
            spreads widely: GraphCL on MUTAG at B = 128 (2 batches an epoch) holds every epoch
            within 0.1 with it, as walked and measured at the epoch's end (190 of 190 over 10
            seeds), against 86 % with ``max_candidate_walks=candidate_walks`` (no extra walks),
            with accuracy within its spread (see ``examples/RESULTS.md``).

    Raises:
        ValueError: ``batch_size`` outside ``[1, N]``, ``k < 1``, ``k >= N``, ``m < k``,
            ``restart_prob`` outside ``[0, 1]``, an unknown ``restart_prob_schedule``,
            ``max_fruitless_steps < 1``, ``lockstep_batches < 1``, bad refresh settings, bad
            ``embeddings`` (non-2-D, NaN/inf, row count other than ``N``), ``target_hardness``
            outside ``[0, 1]`` or with another backend than ``"random"``,
            ``hardness_tolerance`` outside ``(0, 1]``, ``calibration_builds < 1``,
            ``reseed_candidates < 0``, ``candidate_walks < 1``, ``candidate_walks > 1`` or
            ``max_candidate_walks > 1`` without a ``target_hardness``,
            ``max_candidate_walks < candidate_walks``, or ``drift_epochs < 0``.
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
        candidate_walks: int | None = None,
        drift_epochs: int = DEFAULT_DRIFT_EPOCHS,
        max_candidate_walks: int | None = None,
    ) -> None:
        (target_hardness, hardness_tolerance, calibration_builds, reseed_candidates, candidate_walks, drift_epochs,
         max_candidate_walks) = check_hardness_settings(
            target_hardness, hardness_tolerance, calibration_builds, reseed_candidates, backend, candidate_walks,
            drift_epochs, max_candidate_walks,
        )
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
        self._init_hardness(
            target_hardness, hardness_tolerance, calibration_builds, reseed_candidates, candidate_walks, drift_epochs,
            max_candidate_walks,
        )
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

    def _rank_invariants(self) -> dict[str, Any]:
        schedule = self.restart_prob_schedule
        return {
            **super()._rank_invariants(),
            "restart_prob": self.restart_prob,
            "restart_prob_schedule": schedule if isinstance(schedule, str) else "callable",
            "max_fruitless_steps": self.max_fruitless_steps, "symmetrize": self.symmetrize,
            "lockstep_batches": self.lockstep_batches, "target_hardness": self.target_hardness,
            "hardness_tolerance": self.hardness_tolerance, "calibration_builds": self.calibration_builds,
            "reseed_candidates": self.reseed_candidates, "candidate_walks": self.candidate_walks,
            "max_candidate_walks": self.max_candidate_walks, "drift_epochs": self.drift_epochs,
        }

    def _on_epoch_start(self, epoch: int, resumed: bool) -> None:
        self._record_epoch_hardness(epoch, resumed)
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

    def _next_batch(self, epoch: int, index: int, used: np.ndarray) -> list[int]:
        batch = self._chosen_batch(epoch, index, used)
        if self.target_hardness is not None and self.graph is not None and index == len(self) - 1:
            self._plan_epoch(epoch, [*self._history, batch])
        return batch

    def _chosen_batch(self, epoch: int, index: int, used: np.ndarray) -> list[int]:
        if not (self.replacement and self.max_candidate_walks > 1 and self.graph is not None):
            return super()._next_batch(epoch, index, used)
        # Independent batches, chosen one at a time for the epoch so far (see _closest_walk).
        def stream(r: int) -> np.random.SeedSequence:
            return np.random.SeedSequence([self.seed, EPOCH_STREAM, epoch, index, *([r] if r else [])])

        def walk(candidate_used: np.ndarray, rng: np.random.Generator, stats: WalkStats) -> list[list[int]]:
            return [walk_batch(self.graph, candidate_used, self.global_batch_size, self.current_restart_prob, rng,
                               max_fruitless_steps=self.max_fruitless_steps, stats=stats)]

        [batch] = self._closest_walk(walk, np.zeros(self.num_instances, dtype=bool), stream, range(index, index + 1))
        return self._padded(batch)

    def _collect_group(self, used: np.ndarray, sizes: list[int], epoch: int, first: int) -> list[list[int]]:
        if self.graph is None or (len(sizes) == 1 and not self.reseed_candidates and self.max_candidate_walks == 1):
            return super()._collect_group(used, sizes, epoch, first)
        # The group's own stream; the trailing length keeps it apart from batch ``first``'s.
        # Candidate r > 0 appends r, so that candidate 0 is the walk without candidates.
        def stream(r: int) -> np.random.SeedSequence:
            return np.random.SeedSequence([self.seed, EPOCH_STREAM, epoch, first, len(sizes), *([r] if r else [])])

        vectors = self._reseed_vectors() if self.reseed_candidates else None

        def walk(candidate_used: np.ndarray, rng: np.random.Generator, stats: WalkStats) -> list[list[int]]:
            return grow_batches(
                self.graph, candidate_used, sizes, self.current_restart_prob, rng,
                max_fruitless_steps=self.max_fruitless_steps,
                num_walkers=_walkers(self.lockstep_batches, len(self)), stats=stats,
                vectors=vectors, reseed_candidates=self.reseed_candidates,
            )

        return self._closest_walk(walk, used, stream, range(first, first + len(sizes)))

    def __repr__(self) -> str:
        return (
            f"{super().__repr__()[:-1]}, k={self.k}, m={self.m}, restart_prob={self.restart_prob}, "
            f"graph_version={self.graph_version})"
        )
