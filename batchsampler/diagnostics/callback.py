"""A training-loop monitor that records what the sampler did, epoch by epoch, to RUN.json.

Usage from any loop (plain PyTorch, accelerate, a Lightning callback)::

    monitor = SamplerMonitor(sampler, labels=labels, embeddings_fn=encode_all)
    for epoch in range(epochs):
        monitor.on_epoch_start()
        for indices, x in loader:
            ...                                  # forward, backward, sampler.update(...)
            monitor.on_batch(indices)
        monitor.on_epoch_end(epoch, metrics={"knn_accuracy": evaluate()})
    monitor.to_json("RUN.json")                  # merges with runs of other samplers there
    # then: batchsampler report RUN.json -o plots/

The records and the file format are described in :mod:`batchsampler.diagnostics.runfile`.
"""

from __future__ import annotations

import datetime
import logging
import numbers
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .._validation import check_int
from ..base import BaseBatchSampler
from ..hardness import epoch_profile
from .batches import summarize_epoch, unit_rows
from .graph import summarize_graph, summarize_staleness, summarize_walk
from .runfile import RUN_FORMAT, json_safe, load_runs, merge_runs, write_runs

__all__ = ["SamplerMonitor"]

logger = logging.getLogger(__name__)

_CONFIG_KEYS = (
    "num_instances", "batch_size", "k", "m", "restart_prob", "restart_prob_schedule", "refresh_every",
    "warmup_epochs", "background", "swap_delay", "replacement", "drop_last", "seed", "target_hardness",
    "hardness_tolerance", "reseed_candidates", "candidate_walks", "max_candidate_walks", "drift_epochs",
)


class SamplerMonitor:
    """Records per-epoch diagnostics of one sampler during training.

    Args:
        sampler: the batch sampler the loop draws from (any :class:`~batchsampler.BaseBatchSampler`).
        name: run name in RUN.json (default: the sampler's name in :data:`batchsampler.SAMPLERS`,
            e.g. ``"batchsampler"``).
        labels: optional ``[N]`` labels, for the same-label share and the graph's label rates.
        embeddings: optional fixed ``[N, d]`` embeddings (array or tensor) in which hardness is
            measured, e.g. a common reference space to compare samplers.
        embeddings_fn: optional callable returning ``[N, d]`` embeddings, called once per
            :meth:`on_epoch_end` (e.g. the dataset encoded by the current model). Without
            ``embeddings`` and ``embeddings_fn``, hardness uses the sampler's bank (rows seen so
            far; pairs with an unseen row are left out).
        graph_stats: compute :func:`~batchsampler.diagnostics.summarize_graph` for each new
            graph version (components and degrees cost ``O(N k)``; turn off for huge graphs).

    Timing: ``timing.sampler_seconds`` is the growth of ``sampler.sampler_seconds`` since the
    previous epoch record (walks and waits for late graph builds, in the main process);
    ``sampler_share`` divides it by the summed step times of :meth:`on_batch`. Background builds
    run beside the steps: their own time is ``build_seconds`` and shows up only as slower steps.

    In distributed mode, call it with this rank's ``indices``: coverage and pair statistics
    then describe this rank's slices.

    Raises:
        TypeError: if ``sampler`` is not a batch sampler of this package, or ``embeddings_fn``
            is not callable.
        ValueError: if both ``embeddings`` and ``embeddings_fn`` are given, or ``labels`` /
            ``embeddings`` do not have ``N`` rows.
    """

    def __init__(
        self,
        sampler: BaseBatchSampler,
        *,
        name: str | None = None,
        labels: Any = None,
        embeddings: Any = None,
        embeddings_fn: Callable[[], Any] | None = None,
        graph_stats: bool = True,
    ) -> None:
        if not isinstance(sampler, BaseBatchSampler):
            raise TypeError(f"sampler must be a batchsampler sampler, got {type(sampler).__name__}")
        if embeddings is not None and embeddings_fn is not None:
            raise ValueError("embeddings and embeddings_fn are exclusive: give one of them")
        if embeddings_fn is not None and not callable(embeddings_fn):
            raise TypeError(f"embeddings_fn must be callable, got {type(embeddings_fn).__name__}")
        self.sampler = sampler
        self.num_instances = sampler.num_instances
        self.name = name if name is not None else _registry_name(sampler)
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"name must be a non-empty str, got {self.name!r}")
        self.labels = None
        if labels is not None:
            self.labels = np.asarray(labels).reshape(-1)
            if self.labels.shape[0] != self.num_instances:
                raise ValueError(f"labels must have {self.num_instances} entries, got {self.labels.shape[0]}")
        self._unit = None if embeddings is None else unit_rows(embeddings, self.num_instances)
        self.embeddings_fn = embeddings_fn
        self.graph_stats = bool(graph_stats)
        self.records: list[dict[str, Any]] = []
        """The epoch records so far (keys: see :mod:`batchsampler.diagnostics.runfile`)."""
        self._batches: list[np.ndarray] = []
        self._step_seconds = 0.0
        self._timed_steps = 0
        self._clock: float | None = None
        self._sampler_seconds = sampler.sampler_seconds
        self._refresh = _refresh_counters(sampler)
        self._graph_cache: tuple[int, dict[str, Any] | None] | None = None

    # ------------------------------------------------------------------ loop hooks

    def on_epoch_start(self) -> None:
        """Start the step clock (optional: without it the first step of an epoch is not timed)."""
        self._clock = time.perf_counter()

    def on_batch(self, indices: Any, step_seconds: float | None = None) -> None:
        """Record one training step's batch.

        Args:
            indices: ``[b]`` dataset indices of the batch (tensor, array or list).
            step_seconds: wall time of the whole step (data loading included). ``None``
                (default): the time since the previous :meth:`on_batch` or
                :meth:`on_epoch_start` of this epoch.

        Raises:
            TypeError: on non-integer indices.
            ValueError: on indices outside ``[0, N)`` or a negative ``step_seconds``.
        """
        if hasattr(indices, "detach"):
            indices = indices.detach().cpu().numpy()
        index = np.asarray(indices).reshape(-1)
        if index.size and not np.issubdtype(index.dtype, np.integer):
            raise TypeError(f"indices must hold integers, got dtype {index.dtype}")
        index = index.astype(np.int64, copy=False)
        if index.size and (index.min() < 0 or index.max() >= self.num_instances):
            raise ValueError(f"indices must lie in [0, {self.num_instances}), got {index.min()}..{index.max()}")
        now = time.perf_counter()
        if step_seconds is not None:
            if not isinstance(step_seconds, numbers.Real) or not step_seconds >= 0:
                raise ValueError(f"step_seconds must be a number >= 0, got {step_seconds!r}")
            self._step_seconds += float(step_seconds)
            self._timed_steps += 1
        elif self._clock is not None:
            self._step_seconds += now - self._clock
            self._timed_steps += 1
        self._clock = now
        self._batches.append(index)

    def on_epoch_end(self, epoch: int | None = None, metrics: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Summarise the epoch's batches and the sampler's state; append and return the record.

        Args:
            epoch: the epoch number (default: one more than the previous record's).
            metrics: optional ``{name: number}``, e.g. ``{"knn_accuracy": 0.93, "loss": 1.2}``.

        Raises:
            TypeError: if a metric name is not a str or a value is not a real number or ``None``.
            ValueError: on a negative ``epoch``, or ``embeddings_fn`` returning the wrong shape.
        """
        if epoch is None:
            epoch = self.records[-1]["epoch"] + 1 if self.records else 0
        epoch = check_int("epoch", epoch, low=0)
        metrics = _check_metrics(metrics)
        unit, valid, source = self._hardness_embeddings()
        summary = summarize_epoch(self._batches, self.num_instances, embeddings=unit, labels=self.labels, valid=valid)
        hardness = None
        if summary.mean_similarity is not None:
            hardness = {
                "mean": summary.mean_similarity, "q10": summary.similarity_q10,
                "q50": summary.similarity_q50, "q90": summary.similarity_q90,
                **self._relative_hardness(unit, valid),
            }
        record = {
            "epoch": epoch,
            "steps": len(self._batches),
            "num_indices": summary.num_indices,
            "coverage": summary.coverage,
            "repeats": summary.repeats,
            "hardness": hardness,
            "hardness_source": source,
            "same_label_share": summary.same_label_share,
            "walk": summarize_walk(self.sampler.walk_stats, summary.num_batches, summary.num_indices),
            "graph_version": getattr(self.sampler, "graph_version", None),
            "graph_k": _graph_setting(self.sampler, "k"),
            "graph_m": _graph_setting(self.sampler, "m"),
            "target_hardness": getattr(self.sampler, "target_hardness", None),
            # The epoch as walked, on the sampler's bank before training on it (None without a target).
            "planned_hardness": getattr(self.sampler, "planned_hardness", None),
            "hardness_aim": getattr(self.sampler, "hardness_aim", None),
            "graph": self._graph_summary(),
            "staleness": summarize_staleness(self.sampler.bank),
            "timing": self._timing(),
            "metrics": metrics,
        }
        record = json_safe(record)
        self.records.append(record)
        self._batches, self._step_seconds, self._timed_steps, self._clock = [], 0.0, 0, None
        logger.info(
            "%s epoch %d: hardness %s, same-label share %s, sampler %.3fs",
            self.name, epoch, None if hardness is None else round(hardness["mean"], 4),
            record["same_label_share"], record["timing"]["sampler_seconds"],
        )
        return record

    # ------------------------------------------------------------------ output

    def config(self) -> dict[str, Any]:
        """The sampler's class and settings, as stored in ``meta["samplers"][name]``."""
        config: dict[str, Any] = {"class": type(self.sampler).__name__}
        for key in _CONFIG_KEYS:
            value = getattr(self.sampler, key, None)
            if value is not None:
                config[key] = value if isinstance(value, (bool, int, float, str)) else repr(value)
        return config

    def to_dict(self, meta: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """This run as a RUN.json document (see :mod:`batchsampler.diagnostics.runfile`)."""
        from .. import __version__

        document_meta = {
            "batchsampler_version": __version__,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "samplers": {self.name: self.config()},
        }
        document_meta.update(meta or {})
        return {"format": RUN_FORMAT, "runs": {self.name: list(self.records)}, "meta": json_safe(document_meta)}

    def to_json(self, path: str | os.PathLike, *, merge: bool = True, meta: Mapping[str, Any] | None = None) -> Path:
        """Write RUN.json; with ``merge`` (default) an existing file keeps its other runs.

        A run of the same name in the file is replaced. Returns the path written.

        Raises:
            ValueError: if ``merge`` and the existing file is not a RUN.json document.
        """
        path = Path(path)
        document = self.to_dict(meta)
        if merge and path.exists():
            document = merge_runs(load_runs(path), document)
        write_runs(path, document)
        return path

    # ------------------------------------------------------------------ internals

    def _hardness_embeddings(self) -> tuple[np.ndarray | None, np.ndarray | None, str]:
        if self._unit is not None:
            return self._unit, None, "embeddings"
        if self.embeddings_fn is not None:
            return unit_rows(self.embeddings_fn(), self.num_instances, "embeddings_fn()"), None, "embeddings_fn"
        bank = self.sampler.bank
        if bank.embeddings is None:
            return None, None, "bank"
        return bank.numpy(), bank.seen, "bank"  # a host copy of a device bank

    def _relative_hardness(self, unit: np.ndarray, valid: np.ndarray | None) -> dict[str, Any]:
        """The epoch's hardness on the 0-1 scale of :mod:`batchsampler.hardness`, overall and by quarter."""
        usable = unit.shape[0] if valid is None else int(valid.sum())
        if usable < 2 or not self._batches:
            return {}
        profile = epoch_profile(unit, self._batches, self.sampler.global_batch_size, np.random.default_rng(0), valid=valid)
        return {
            "relative": profile["relative_hardness"], "relative_by_quarter": profile["by_part"],
            "uniform_reference": profile["scale"]["uniform"], "knn_reference": profile["scale"]["knn"],
        }

    def _graph_summary(self) -> dict[str, Any] | None:
        graph = getattr(self.sampler, "graph", None)
        if graph is None or not self.graph_stats:
            return None
        version = self.sampler.graph_version
        if self._graph_cache is None or self._graph_cache[0] != version:
            self._graph_cache = (version, summarize_graph(graph, self.labels).as_dict())
        return self._graph_cache[1]

    def _timing(self) -> dict[str, Any]:
        sampler_seconds = self.sampler.sampler_seconds - self._sampler_seconds
        self._sampler_seconds = self.sampler.sampler_seconds
        refresh = _refresh_counters(self.sampler)
        delta = {key: refresh[key] - self._refresh[key] for key in refresh}
        self._refresh = refresh
        steps = len(self._batches)
        share = None
        if self._timed_steps and self._step_seconds > 0:
            # Untimed steps (the first of an epoch without on_epoch_start) count at the mean step time.
            share = sampler_seconds / (self._step_seconds * steps / self._timed_steps)
        return {
            "sampler_seconds": sampler_seconds,
            "step_seconds": self._step_seconds,
            "sampler_share": share,
            "timed_steps": self._timed_steps,
            **delta,
        }


# ---------------------------------------------------------------------- helpers


def _registry_name(sampler: BaseBatchSampler) -> str:
    from .. import SAMPLERS

    for name, cls in SAMPLERS.items():
        if type(sampler) is cls:
            return name
    return type(sampler).__name__


def _graph_setting(sampler: BaseBatchSampler, name: str) -> int | None:
    """``k`` or ``m`` of the graph in use (a ``target_hardness`` search changes them), if any."""
    if getattr(sampler, "graph", None) is None:
        return None
    value = sampler.graph.build_params.get(name)
    return None if value is None else int(value)


def _refresh_counters(sampler: BaseBatchSampler) -> dict[str, Any]:
    stats = getattr(sampler, "refresh_stats", None)
    if stats is None:
        return {"builds": 0, "build_seconds": 0.0, "stall_seconds": 0.0}
    return {"builds": stats.builds, "build_seconds": stats.build_seconds, "stall_seconds": stats.stall_seconds}


def _check_metrics(metrics: Mapping[str, Any] | None) -> dict[str, float | None]:
    if metrics is None:
        return {}
    if not isinstance(metrics, Mapping):
        raise TypeError(f"metrics must be a mapping of name to number, got {type(metrics).__name__}")
    checked = {}
    for key, value in metrics.items():
        if not isinstance(key, str):
            raise TypeError(f"metrics keys must be str, got {key!r}")
        if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
            value = value.item()  # 0-dim tensors and NumPy scalars
        if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Real)):
            raise TypeError(f"metrics[{key!r}] must be a real number or None, got {type(value).__name__}")
        checked[key] = None if value is None else float(value)
    return checked
