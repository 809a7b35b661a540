"""Samplers that walk a proximity graph and keep it fresh during training.

The graph is rebuilt from the embedding bank on request (:meth:`GraphBatchSampler.refresh`)
or on a schedule (``refresh_every`` produced batches, after ``warmup_epochs`` epochs of
uniform batches). A rebuild runs in a background thread while batches keep coming from the
old graph; the new graph takes over exactly ``swap_delay`` produced batches after the request
(the sampler waits for it there if it is late). Fixing the swap point, instead of swapping
whenever the thread finishes, keeps the batch stream a deterministic function of the seed and
the training run: identical on every rank and after a resume.

Timing with DataLoader prefetching: the batch sampler runs ahead of the training loop by about
``prefetch_factor * num_workers`` batches (0 with ``num_workers=0``), so batch counts here are
*produced* batches and an :meth:`update` after training step ``t`` is in the bank from about
batch ``t + prefetch_factor * num_workers`` on.
"""

from __future__ import annotations

import logging
import time
from abc import abstractmethod
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from ._build import BACKENDS, build_rows
from ._build_group import BuildGroup
from ._graph_state import GraphStateMixin, RefreshStats, _PendingBuild
from ._validation import check_int
from .bank import EmbeddingBank
from .base import GRAPH_STREAM, BaseBatchSampler, check_bool
from .graph import ProximityGraph, build_neighbor_rows

__all__ = ["GraphBatchSampler", "RefreshStats"]

logger = logging.getLogger(__name__)


class GraphBatchSampler(GraphStateMixin, BaseBatchSampler):
    """Base of samplers that walk a :class:`ProximityGraph` built from the embedding bank.

    Until the first graph exists, batches are uniform (warm-up).

    Args:
        k: out-degree of the graph, ``1 <= k < N``.
        m: candidates per node, ``m >= k`` (``m >= N - 1``: exact kNN graph).
        refresh_every: rebuild the graph every this many produced batches (the paper uses 100);
            ``None`` (default): only when :meth:`refresh` is called.
        warmup_epochs: with ``refresh_every``, epochs of uniform batches before the first
            automatic build (default 1).
        background: scheduled builds run in a background thread (default True); ``False``
            builds inline, stalling the batch stream for the build time.
        swap_delay: produced batches between a background build request and the swap
            (default 8). It should cover the build time in training steps: larger hides
            longer builds, smaller keeps graphs fresher.
        num_threads: FAISS / torch threads during builds (``None``: unchanged).
        backend: graph construction, as in :meth:`ProximityGraph.build`: ``"random"`` (default,
            the paper's ``m`` random candidates), ``"exact"``, or FAISS ``"hnsw"`` / ``"ivf"``
            (approximate true kNN for large ``N``; ``m`` ignored).
        index_params: FAISS settings for ``"hnsw"`` / ``"ivf"`` (see :meth:`ProximityGraph.build`).
        device: where the bank lives and graphs are built. ``None`` (default): the device of
            the tensors passed to the first :meth:`update` (or the constructor's
            ``embeddings``), the CPU for arrays. On the CPU the bank is a NumPy array and the
            build the NumPy one, as without the option. On a CUDA device (``"cuda"``,
            ``"cuda:1"``, a ``torch.device``) the bank is a tensor there (``bank_dtype``
            float32 or float16), updates stay there, graphs are built there (see
            ``device`` in :meth:`ProximityGraph.build`) and only the int32 neighbour table
            comes to the CPU for the walks. Ranks may use different GPUs; the bank and the
            graph are the same on every rank either way. (:meth:`refresh_from` passes its
            encodings as arrays: with ``None`` they do not move the bank to a GPU.)
        **kwargs: see :class:`~batchsampler.base.BaseBatchSampler`.

    Raises:
        ValueError: ``k < 1``, ``k >= N``, ``m < k``, ``refresh_every < 1``, ``warmup_epochs < 0``,
            ``swap_delay < 0``, ``num_threads < 1``, an unknown ``backend``, an unknown or
            unavailable ``device`` (CUDA without a GPU).
        TypeError: ``index_params`` not a dict, ``device`` neither a string nor a ``torch.device``.
    """

    def __init__(
        self,
        data: Any,
        batch_size: int,
        *,
        k: int,
        m: int,
        refresh_every: int | None = None,
        warmup_epochs: int = 1,
        background: bool = True,
        swap_delay: int = 8,
        num_threads: int | None = None,
        backend: str = "random",
        index_params: dict[str, Any] | None = None,
        device: Any = None,
        **kwargs: Any,
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if index_params is not None and not isinstance(index_params, dict):
            raise TypeError(f"index_params must be a dict or None, got {type(index_params).__name__}")
        if device is not None:
            from ._torch_build import resolve_device

            device = resolve_device(device)
        super().__init__(data, batch_size, **kwargs)
        self.device = device
        self.bank = EmbeddingBank(self.num_instances, dtype=self.bank.dtype, device=device)
        self.k = check_int("k", k, low=1)
        self.m = check_int("m", m, low=1)
        if self.k >= self.num_instances:
            raise ValueError(f"k must be < the number of instances ({self.num_instances}), got k={self.k}")
        if self.m < self.k:
            raise ValueError(f"m must be >= k, got m={self.m} < k={self.k}")
        self.refresh_every = None if refresh_every is None else check_int("refresh_every", refresh_every, low=1)
        self.warmup_epochs = check_int("warmup_epochs", warmup_epochs, low=0)
        self.background = check_bool("background", background)
        self.swap_delay = check_int("swap_delay", swap_delay, low=0)
        self.num_threads = None if num_threads is None else check_int("num_threads", num_threads, low=1)
        self.backend = backend
        self.index_params = dict(index_params or {})
        self.graph: ProximityGraph | None = None
        self.graph_version = 0
        self.refresh_stats = RefreshStats()
        self._builds_requested = 0
        self._produced_total = 0
        self._next_refresh_at: int | None = None
        self._pending: _PendingBuild | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._epoch_start_version = 0
        # Distributed mode: background builds are sharded over a gloo group of the sampler's own
        # (a collective: every rank creates it here, at the same point). None on one process.
        self._build_group: BuildGroup | None = self.dist.new_build_group()

    # ------------------------------------------------------------------ graph

    def set_graph(self, graph: ProximityGraph) -> None:
        """Walk ``graph`` from the next produced batch on (e.g. one built offline).

        Raises:
            TypeError: if ``graph`` is not a :class:`ProximityGraph`.
            ValueError: if it does not have ``N`` nodes.
        """
        if not isinstance(graph, ProximityGraph):
            raise TypeError(f"graph must be a ProximityGraph, got {type(graph).__name__}")
        if graph.num_nodes != self.num_instances:
            raise ValueError(f"graph must have {self.num_instances} nodes, got {graph.num_nodes}")
        self.graph = graph
        self.graph_version += 1

    def refresh(self, *, blocking: bool | None = None) -> ProximityGraph | bool | None:
        """Rebuild the graph from the bank (the automatic schedule uses ``background``).

        Args:
            blocking: ``True`` or ``None`` (default): build now; the next produced batch walks
                the new graph (a pending background build is swapped in first). ``False``:
                request a background build that takes over ``swap_delay`` produced batches
                later. Requests coalesce: while a build is pending, another request joins it
                (``refresh_stats.coalesced`` counts them) and queues nothing. In distributed
                mode every rank must call this at the same point.

        Returns:
            Blocking: the graph in use after the call. Non-blocking: ``True`` if a build was
            queued, ``False`` if the request joined the pending build or there was nothing to
            build. With ``k`` or fewer instances seen there is nothing to build: a warning is
            logged and the current graph (or warm-up) stays.

        Raises:
            RuntimeError: if a background build fails (here, or where its swap was due).
            RuntimeError: in distributed mode, if the ranks have not made the same ``update``
                calls (see :mod:`batchsampler.distributed`).
        """
        blocking = True if blocking is None else check_bool("blocking", blocking)
        if blocking and self.dist.enabled:
            self.dist.check_in_step("update", self.bank.updates)
        if not self._enough_seen():
            return self.graph if blocking else False
        if blocking:
            self._swap_pending(force=True)
            self._build_now()
            return self.graph
        if self._pending is not None:
            self.refresh_stats.coalesced += 1
            logger.debug("refresh(blocking=False): a build is already pending, request coalesced")
            return False
        self._request_background()
        return True

    def update(self, indices: Any, embeddings: Any) -> None:
        """As :meth:`BaseBatchSampler.update`; the rows are stored on the sampler's ``device``
        (with ``device=None``, the first call's tensors decide it)."""
        # Decided before a distributed all-gather turns the tensors into arrays.
        self.bank.settle_device(embeddings)
        super().update(indices, embeddings)

    def _enough_seen(self) -> bool:
        seen = self.bank.num_seen
        if seen <= self.k:
            logger.warning("refresh skipped: %d instances seen, need more than k=%d", seen, self.k)
            return False
        return True

    def _next_build_seed(self) -> np.random.SeedSequence:
        seed = np.random.SeedSequence([self.seed, GRAPH_STREAM, self._builds_requested])
        self._builds_requested += 1
        return seed

    def _build_now(self) -> None:
        start = time.perf_counter()
        graph = self._build_graph(self.bank.embeddings, self.bank.seen, self._next_build_seed(), sharded=True)
        elapsed = time.perf_counter() - start
        self.refresh_stats.builds += 1
        self.refresh_stats.build_seconds += elapsed
        self.refresh_stats.stall_seconds += elapsed
        self.set_graph(graph)
        logger.info("graph v%d built inline in %.2fs", self.graph_version, elapsed)

    def _request_background(self) -> None:
        # The snapshot keeps the build independent of updates that arrive while it runs.
        embeddings, seen = self.bank.snapshot()
        build_number, device = self._builds_requested, self.bank.build_device
        seed = self._next_build_seed()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="batchsampler-graph")
        pending = _PendingBuild(self._produced_total + self.swap_delay)

        def build() -> tuple[ProximityGraph, float]:
            start, cpu = time.perf_counter(), time.thread_time()
            if self._build_group is None or not self._shards_background_builds:
                graph = self._build_graph(embeddings, seen, seed)
            else:
                graph = self._build_sharded_in_background(embeddings, seen, seed, build_number, device, pending)
            pending.cpu_seconds = time.thread_time() - cpu
            return graph, time.perf_counter() - start

        pending.future = self._executor.submit(build)
        self._pending = pending

    @property
    def _shards_background_builds(self) -> bool:
        """Whether background builds in distributed mode are split over the build group."""
        return True

    def _build_sharded_in_background(
        self, embeddings: Any, seen: np.ndarray, seed: np.random.SeedSequence, build_number: int, device: Any,
        pending: _PendingBuild,
    ) -> ProximityGraph:
        """In the build thread: this rank's ``1 / world_size`` of the rows, exchanged over the build group.

        Gives the graph of a single build with the same seed (the random backend: bit for bit).
        Every rank takes part in the exchange even when its own part failed, so that a failure
        on any rank raises the same ``RuntimeError`` on every rank (at the swap), never a hang.
        Ranks on one node share one table in shared memory (see :mod:`batchsampler._shared`).
        """
        group = self._build_group
        mask = None if seen.all() else seen
        shard, error = None, None
        try:
            # build_rows rather than build_neighbor_rows: int32 neighbours as computed, without the
            # int64 copy of the public function (400 MB of fresh memory per 1e6 rows at k = 100).
            out = group.output_table(build_number, self.num_instances, self.k)  # the rows go straight there
            built = build_rows(
                embeddings, self.k, self.m, seed=seed, mask=mask, backend=self.backend, block_size=None,
                index_params=self.index_params, num_threads=self.num_threads, shard=(group.rank, group.world_size),
                keep_scores=True, show_progress=False, device=device, out=out,
            )
            rows = np.arange(built.neighbors.shape[0], dtype=np.int64) if built.rows is None else built.rows
            shard = (rows, built.neighbors, built.scores)
            del built
            pending.rows = int(rows.size)
        except Exception as caught:  # noqa: BLE001  (every rank raises it, see gather_graph)
            error = caught
        neighbors, scores, info = group.gather_graph(build_number, self.num_instances, self.k, shard, error)
        del shard
        pending.shared = info["shared"]
        params = {
            "k": self.k, "m": self.m, "exact": self.m >= self.num_instances - 1, "shards": group.world_size,
            "backend": self.backend,
        }
        return ProximityGraph.from_neighbors(neighbors, scores, build_params=params)

    def _swap_pending(self, force: bool = False) -> None:
        pending = self._pending
        if pending is None or (not force and self._produced_total < pending.swap_at):
            return
        self._pending = None
        wait_start = time.perf_counter()
        graph, build_seconds = pending.get()
        self.refresh_stats.stall_seconds += time.perf_counter() - wait_start
        self.refresh_stats.builds += 1
        self.refresh_stats.build_seconds += build_seconds
        self.set_graph(graph)
        logger.info(
            "graph v%d built in the background in %.2fs (%.2f CPU s in the build thread%s)", self.graph_version,
            build_seconds, pending.cpu_seconds, "" if pending.rows is None else f", {pending.rows} rows on this rank",
        )

    def _build_graph(
        self, embeddings: np.ndarray, seen: np.ndarray, seed: np.random.SeedSequence, *, sharded: bool = False
    ) -> ProximityGraph:
        """Build a graph from a bank snapshot; rows not ``seen`` are kept out of the search.

        ``sharded`` (inline builds in distributed mode only, where every rank makes the same
        call): each rank computes the rows of its share of anchor blocks and the rows are
        all-gathered, giving the same graph as a single build in ``1 / world_size`` of the time.
        Background builds are sharded separately, in the build thread and over the sampler's
        own gloo group (:meth:`_build_sharded_in_background`).
        """
        mask = None if seen.all() else seen
        if not (sharded and self.dist.enabled):
            return ProximityGraph.build(
                embeddings, self.k, self.m, seed=seed, mask=mask, num_threads=self.num_threads,
                backend=self.backend, index_params=self.index_params, device=self.bank.build_device,
            )
        rows, neighbors, scores = build_neighbor_rows(
            embeddings, self.k, self.m, seed=seed, shard=(self.dist.rank, self.dist.world_size), mask=mask,
            num_threads=self.num_threads, backend=self.backend, index_params=self.index_params,
            device=self.bank.build_device,
        )
        rows = self.dist.all_gather_rows(rows)
        full_neighbors = np.empty((self.num_instances, self.k), dtype=np.int64)
        full_scores = np.empty((self.num_instances, self.k), dtype=np.float32)
        full_neighbors[rows] = self.dist.all_gather_rows(neighbors)
        full_scores[rows] = self.dist.all_gather_rows(scores)
        params = {
            "k": self.k, "m": self.m, "exact": self.m >= self.num_instances - 1, "shards": self.dist.world_size,
            "backend": self.backend,
        }
        return ProximityGraph.from_neighbors(full_neighbors, full_scores, build_params=params)

    def close(self) -> None:
        """Wait for a pending background build (without swapping) and stop the build thread.

        A graph in shared memory (distributed background builds) has no name left to remove by
        then: its name is unlinked as soon as the node's ranks have mapped it, and its memory is
        freed when the last graph object using it is (the kernel keeps it while any rank maps it).
        """
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        if self._build_group is not None:
            self._build_group.release()  # the spare shared table, kept for the next build

    # ------------------------------------------------------------------ epoch hooks

    def _on_epoch_start(self, epoch: int, resumed: bool) -> None:
        if not resumed:
            self._epoch_start_version = self.graph_version
        if self.refresh_every is not None and epoch >= self.warmup_epochs and self._next_refresh_at is None:
            self._next_refresh_at = self._produced_total

    def _on_batch_start(self) -> None:
        due = self._next_refresh_at is not None and self._produced_total >= self._next_refresh_at
        if due and self._pending is None and self._enough_seen():
            if self.background:
                self._request_background()
            else:
                self._build_now()
            self._next_refresh_at = self._produced_total + self.refresh_every
        self._swap_pending()
        self._produced_total += 1

    def _graph_changed_before_resume(self) -> bool:
        return self.graph_version != self._epoch_start_version

    def _collect(self, used: np.ndarray, size: int, rng: np.random.Generator) -> list[int]:
        if self.graph is None:
            return self._uniform(used, size, rng)
        return self._collect_from_graph(self.graph, used, size, rng)

    @abstractmethod
    def _collect_from_graph(
        self, graph: ProximityGraph, used: np.ndarray, size: int, rng: np.random.Generator
    ) -> list[int]:
        """One global batch from ``graph``."""

    # ------------------------------------------------------------------ resumption

    def _rank_invariants(self) -> dict[str, Any]:
        return {
            **super()._rank_invariants(),
            "k": self.k, "m": self.m, "refresh_every": self.refresh_every, "warmup_epochs": self.warmup_epochs,
            "background": self.background, "swap_delay": self.swap_delay, "backend": self.backend,
            "index_params": self.index_params,
            # The kind only: ranks use different GPUs (cuda:0, cuda:1), which is no mismatch.
            "device": None if self.device is None else ("cpu" if self.device.type == "cpu" else "accelerator"),
        }

    def __getstate__(self) -> dict[str, Any]:
        # Copies (pickling, deepcopy by frameworks) get no thread: a pending build is finished
        # first and kept as a result, so the copy swaps it in at the same batch.
        state = self.__dict__.copy()
        state["_executor"] = None
        # The build group cannot be copied (a copy could not join its collectives): a copy's
        # background builds are whole-graph builds on each rank. Graph arrays in shared memory
        # pickle as ordinary (private) arrays.
        state["_build_group"] = None
        if self._pending is not None:
            state["_pending"] = _PendingBuild(self._pending.swap_at, result=self._pending.get())
        return state
