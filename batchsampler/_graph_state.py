"""What a graph sampler's state holds: refresh records, the pending build, checkpoint fields.

:class:`RefreshStats` (the cost and choice of graph refreshes, ``sampler.refresh_stats``) and
the pending background build live here with :class:`GraphStateMixin`, the part of
:class:`~batchsampler.graph_sampler.GraphBatchSampler` that puts its graphs and refresh clock
into ``state_dict()`` / ``save()`` and checks them back, all fields before any is applied.
"""

from __future__ import annotations

import logging
import numbers
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._checkpoint import meta_int
from .graph import ProximityGraph

__all__ = ["GraphStateMixin", "RefreshStats"]

logger = logging.getLogger("batchsampler.graph_sampler")  # the messages read as the sampler's


@dataclass
class RefreshStats:
    """What graph refreshes cost so far."""

    builds: int = 0
    """Graphs built."""
    build_seconds: float = 0.0
    """Time spent building (in the background thread or inline)."""
    stall_seconds: float = 0.0
    """Time the batch stream waited for a graph (inline builds and late background builds)."""
    coalesced: int = 0
    """Background requests that joined a build already pending instead of queueing another."""
    k: int = 0
    """Out-degree of the graph in use (0 before the first graph)."""
    m: int = 0
    """Candidates per node of the graph in use (0 before the first graph, or if unknown)."""
    calibration_builds: int = 0
    """Builds beyond one per graph made by ``target_hardness`` searches."""
    relative_hardness: float = float("nan")
    """With ``target_hardness``: the relative hardness of the graph in use's simulated epoch
    when it was chosen (NaN otherwise; each epoch's measured value is in ``hardness_history``)."""


@dataclass
class _PendingBuild:
    """A requested graph: a running build (``future``) or its finished ``result``."""

    swap_at: int
    future: Future | None = None
    result: tuple[ProximityGraph, float] | None = None
    cpu_seconds: float = 0.0
    """CPU time of the build thread (``time.thread_time``), set when the build finishes."""
    rows: int | None = None
    """Rows this process computed (a sharded build: about ``N / world_size``)."""
    shared: str | None = None
    """The shared-memory table the graph lives in (its name is unlinked once mapped), if any."""

    def get(self) -> tuple[ProximityGraph, float]:
        """The graph and its build seconds, waiting for the build if needed.

        Raises:
            RuntimeError: if the build failed (its exception is the cause).
        """
        if self.result is None:
            try:
                self.result = self.future.result()
            except Exception as error:
                raise RuntimeError(f"background graph build failed: {error}") from error
            self.future = None
        return self.result



class GraphStateMixin:
    """Checkpoint fields of a graph sampler: its graphs (in use and pending), graph version and
    refresh clock (see :class:`~batchsampler.graph_sampler.GraphBatchSampler`)."""

    def _extra_state(self) -> dict[str, Any]:
        return {
            "graph_version": self.graph_version,
            "epoch_start_graph_version": self._epoch_start_version,
            "produced_total": self._produced_total,
            "next_refresh_at": self._next_refresh_at,
        }

    def _check_extra_state(self, state: dict[str, Any], where: str) -> dict[str, Any]:
        checked: dict[str, Any] = {}
        for key in ("graph_version", "epoch_start_graph_version", "produced_total", "next_refresh_at"):
            if key not in state:
                raise ValueError(f"{where} has no {key!r} field (not a state_dict() of {type(self).__name__})")
            value = state[key]
            if key == "next_refresh_at" and value is None:
                checked[key] = None
            elif isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
                raise ValueError(f"{where} field {key!r} must be an integer >= 0, got {value!r}")
            else:
                checked[key] = int(value)
        return checked

    def _apply_extra_state(self, checked: dict[str, Any], *, trusted: bool) -> None:
        if not trusted and self._resumes_from_checkpoint(checked["epoch"], checked["position"]):
            return  # the loaded checkpoint's refresh clock is the one that matches its batches
        if not trusted and checked["graph_version"] != self.graph_version:
            logger.warning(
                "state has graph version %s but this sampler has %s: load() the matching checkpoint "
                "to resume exactly", checked["graph_version"], self.graph_version,
            )
        self._epoch_start_version = checked["epoch_start_graph_version"]
        self._produced_total = checked["produced_total"]
        self._next_refresh_at = checked["next_refresh_at"]

    def _save_extra(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        # A failed pending build raises RuntimeError here, as it would at its swap point.
        pending = self._pending.get()[0] if self._pending is not None else None
        for name, graph in (("graph", self.graph), ("pending", pending)):
            if graph is not None:
                arrays[f"{name}_indptr"], arrays[f"{name}_indices"] = graph.indptr, graph.indices
                if graph.scores is not None:
                    arrays[f"{name}_scores"] = graph.scores
                meta[f"{name}_params"] = graph.build_params
        meta["refresh"] = {
            "graph_version": self.graph_version,
            "builds_requested": self._builds_requested,
            "pending_swap_at": None if self._pending is None else self._pending.swap_at,
            "stats": vars(self.refresh_stats),
        }

    def _check_extra(self, data: dict[str, np.ndarray], meta: dict[str, Any], where: str) -> dict[str, Any]:
        graphs: dict[str, ProximityGraph] = {}
        for name in ("graph", "pending"):
            if f"{name}_indptr" not in data:
                continue
            params = meta.get(f"{name}_params")
            if not isinstance(params, dict) or f"{name}_indices" not in data:
                raise ValueError(f"{where}: the stored {name} graph is incomplete")
            try:
                graph = ProximityGraph(
                    data[f"{name}_indptr"], data[f"{name}_indices"], data.get(f"{name}_scores"), build_params=params
                )
            except ValueError as error:
                raise ValueError(f"{where}: the stored {name} graph is invalid: {error}") from error
            if graph.num_nodes != self.num_instances:
                raise ValueError(
                    f"{where}: the stored {name} graph has {graph.num_nodes} nodes, this sampler {self.num_instances}"
                )
            graphs[name] = graph
        refresh = meta.get("refresh")
        if not isinstance(refresh, dict):
            raise ValueError(f"{where}: metadata field 'refresh' is missing")
        checked = {
            "graphs": graphs,
            "graph_version": meta_int(refresh, "graph_version", where),
            "builds_requested": meta_int(refresh, "builds_requested", where),
            "pending_swap_at": meta_int(refresh, "pending_swap_at", where, optional=True),
        }
        if ("pending" in graphs) != (checked["pending_swap_at"] is not None):
            raise ValueError(f"{where}: a pending graph and its swap point must be stored together")
        stats = refresh.get("stats")
        fields = {name: type(value) for name, value in vars(RefreshStats()).items()}
        if not isinstance(stats, dict) or not set(stats) <= set(fields) or not all(
            isinstance(stats[name], numbers.Real) and not isinstance(stats[name], bool)
            and (stats[name] >= 0 or (name == "relative_hardness" and not stats[name] > 0))  # NaN, negative
            for name in stats
        ):
            raise ValueError(f"{where}: metadata field 'refresh.stats' is malformed")
        checked["stats"] = RefreshStats(**{name: fields[name](value) for name, value in stats.items()})
        return checked

    def _apply_extra(self, checked: dict[str, Any]) -> None:
        graphs = checked["graphs"]
        self.graph = graphs.get("graph")
        self.graph_version = checked["graph_version"]
        self._builds_requested = checked["builds_requested"]
        self.refresh_stats = checked["stats"]
        self._pending = None
        if "pending" in graphs:
            self._pending = _PendingBuild(checked["pending_swap_at"], result=(graphs["pending"], 0.0))
