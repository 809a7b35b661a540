"""PNG plots of a RUN.json document (matplotlib, imported here only, drawn without pyplot).

Figures are :class:`matplotlib.figure.Figure` objects saved through the Agg canvas, so no
global backend is selected and nothing needs a display.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["plot_hardness_tradeoff", "plot_runs", "save_png"]

logger = logging.getLogger(__name__)


def plot_runs(document: Mapping[str, Any], output_dir: str | os.PathLike) -> list[Path]:
    """Render the plots of a RUN.json document into ``output_dir`` (created if missing).

    Writes ``hardness.png`` (mean in-batch cosine per epoch, 10-90 % band) and
    ``false_negatives.png`` (same-label share per epoch) when the runs have them,
    ``metrics.png`` (one panel per metric, e.g. accuracy curves) when any epoch has metrics,
    ``overhead.png`` (seconds in the sampler per epoch and their share of step time), and
    ``graph.png`` (same-label neighbours per node next to the rule of thumb ``min(k, p m)``,
    and the in-degree distribution, per epoch) when graph statistics were recorded.

    Runs named ``GROUP@SUFFIX`` (e.g. ``batchsampler@seed1``) form one group: one colour, a
    thick line for the mean over the group's runs and thin lines for each run.

    Returns:
        The paths written, in that order.

    Raises:
        ValueError: if ``document`` is not a RUN.json document or holds no epoch record.
    """
    from .runfile import _check_document

    _check_document(document, "document")
    runs = {name: records for name, records in document["runs"].items() if records}
    if not runs:
        raise ValueError("document holds no epoch record to plot")
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    written = []
    for filename, draw in (
        ("hardness.png", _hardness),
        ("false_negatives.png", _false_negatives),
        ("metrics.png", _metrics),
        ("overhead.png", _overhead),
        ("graph.png", _graph),
    ):
        figure = draw(runs)
        if figure is None:
            continue
        save_png(figure, output / filename, dpi=110)
        written.append(output / filename)
        logger.info("wrote %s", output / filename)
    return written


def save_png(figure, path: str | os.PathLike, dpi: int = 110) -> Path:
    """Save a matplotlib figure as PNG to exactly ``path``, atomically (temporary file in the
    same directory, fsync, rename): an interrupted save leaves the previous file. Returns ``path``."""
    from .._io import atomic_write

    with atomic_write(path) as handle:
        figure.savefig(handle, format="png", dpi=dpi)
    return Path(path)


# ---------------------------------------------------------------------- figures


def _figure(columns: int = 1):
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5.2 * columns, 3.6), layout="constrained")
    return figure, [figure.add_subplot(1, columns, column + 1) for column in range(columns)]


def _series(records: list[dict[str, Any]], *keys: str) -> tuple[list[int], list[float]]:
    """Epochs and values of ``record[keys[0]][keys[1]]...``, skipping missing values."""
    epochs, values = [], []
    for record in records:
        value: Any = record
        for key in keys:
            value = value.get(key) if isinstance(value, Mapping) else None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            epochs.append(record.get("epoch", len(epochs)))
            values.append(float(value))
    return epochs, values


def _groups(runs: Mapping[str, list]) -> dict[str, list[list[dict[str, Any]]]]:
    """Runs by group: ``"batchsampler@seed1"`` belongs to group ``"batchsampler"``."""
    groups: dict[str, list] = {}
    for name, records in runs.items():
        groups.setdefault(name.split("@")[0], []).append(records)
    return groups


def _mean_series(runs: list[list[dict[str, Any]]], *keys: str) -> tuple[list[int], list[float]]:
    """Per epoch, the mean over the runs that have a value there."""
    by_epoch: dict[int, list[float]] = {}
    for records in runs:
        for epoch, value in zip(*_series(records, *keys), strict=True):
            by_epoch.setdefault(epoch, []).append(value)
    epochs = sorted(by_epoch)
    return epochs, [sum(by_epoch[e]) / len(by_epoch[e]) for e in epochs]


def _plot(
    axis,
    runs: Mapping[str, list],
    *keys: str,
    scale: float = 1.0,
    band: tuple[str, str] | None = None,
    style: str = "-",
    suffix: str = "",
) -> None:
    """One line per group (the mean of its runs), thin lines for the runs of groups of several,
    and optionally a shaded band between two other keys of the same group."""
    groups = _groups(runs)
    for number, (group, members) in enumerate(groups.items()):
        epochs, values = _mean_series(members, *keys)
        if not epochs:
            continue
        # The colour follows the group's position in the document, so it matches across figures.
        colour = f"C{number % 10}"
        label = (group if len(members) == 1 else f"{group} (mean of {len(members)})") + suffix
        marker = "o" if style == "-" else None  # markers would hide a dashed line's dashes
        axis.plot(epochs, [scale * v for v in values], style, color=colour, marker=marker, markersize=3, label=label)
        if len(members) > 1:
            for records in members:
                run_epochs, run_values = _series(records, *keys)
                axis.plot(run_epochs, [scale * v for v in run_values], style, color=colour, alpha=0.3, linewidth=0.8)
        if band is not None:
            low_epochs, low = _mean_series(members, *keys[:-1], band[0])
            high_epochs, high = _mean_series(members, *keys[:-1], band[1])
            if low_epochs and low_epochs == high_epochs:
                axis.fill_between(low_epochs, low, high, color=colour, alpha=0.15)


def _finish(axis, title: str, ylabel: str) -> None:
    axis.set_title(title, fontsize=10)
    axis.set_xlabel("epoch")
    axis.set_ylabel(ylabel)
    axis.grid(alpha=0.3)
    if axis.get_legend_handles_labels()[0]:
        axis.legend(fontsize=8)


def _has(runs, *keys: str) -> bool:
    return any(_series(records, *keys)[0] for records in runs.values())


def _hardness(runs):
    if not _has(runs, "hardness", "mean"):
        return None
    figure, (axis,) = _figure()
    _plot(axis, runs, "hardness", "mean", band=("q10", "q90"))
    _finish(axis, "Hardness: in-batch cosine similarity (mean, 10-90 % band)", "cosine similarity")
    return figure


def _false_negatives(runs):
    if not _has(runs, "same_label_share"):
        return None
    figure, (axis,) = _figure()
    _plot(axis, runs, "same_label_share")
    _finish(axis, "False-negative proxy: same-label pairs in a batch", "share of pairs")
    return figure


def _metrics(runs):
    names = sorted({key for records in runs.values() for record in records for key in (record.get("metrics") or {})})
    if not names:
        return None
    figure, axes = _figure(len(names))
    for axis, metric in zip(axes, names, strict=True):
        _plot(axis, runs, "metrics", metric)
        _finish(axis, metric, metric)
    return figure


def _overhead(runs):
    figure, (seconds_axis, share_axis) = _figure(2)
    _plot(seconds_axis, runs, "timing", "sampler_seconds")
    _plot(share_axis, runs, "timing", "sampler_share", scale=100.0)
    _finish(seconds_axis, "Time producing batches (walks, graph waits)", "seconds per epoch")
    _finish(share_axis, "Sampler share of the training step", "% of step time")
    return figure


def _graph(runs):
    if not _has(runs, "graph", "num_nodes"):
        return None
    figure, (label_axis, degree_axis) = _figure(2)
    _plot(label_axis, runs, "graph", "same_label_neighbors")
    _plot(label_axis, runs, "graph", "expected_same_label_neighbors", style="--", suffix=": min(k, p m)")
    _plot(degree_axis, runs, "graph", "in_degree_q50", band=("in_degree_q10", "in_degree_q90"))
    _finish(label_axis, "Out-neighbours sharing the node's label", "neighbours per node")
    _finish(degree_axis, "In-degree (median, 10-90 % band)", "in-degree")
    return figure


# Reference markers stand apart from the curves' colour cycle.
_REFERENCE_STYLES = [("s", "0.55"), ("D", "black"), ("^", "white"), ("v", "0.8")]


def plot_hardness_tradeoff(
    curves: Mapping[str, list[Mapping[str, float]]],
    path: str | os.PathLike,
    *,
    references: Mapping[str, Mapping[str, float]] | None = None,
) -> Path:
    """Same-label share (false-negative proxy) against relative hardness, one curve per setting.

    Args:
        curves: ``{label: [point, ...]}``; a point has ``relative_hardness`` and
            ``same_label_share`` (means over seeds), optionally their ``*_std``, and
            ``target``, written next to it.
        path: the PNG to write.
        references: optional ``{label: point}`` drawn as single markers (uniform, kNN batches).

    Returns:
        The path written.

    Raises:
        ValueError: if no curve has a point.
    """
    if not any(curves.values()):
        raise ValueError("curves holds no point to plot")
    figure, (axis,) = _figure()
    for label, points in curves.items():
        if not points:
            continue
        points = sorted(points, key=lambda p: p["relative_hardness"])
        x = [p["relative_hardness"] for p in points]
        y = [p["same_label_share"] for p in points]
        axis.errorbar(
            x, y, xerr=[p.get("relative_hardness_std", 0.0) for p in points],
            yerr=[p.get("same_label_share_std", 0.0) for p in points], marker="o", markersize=4, capsize=2,
            linewidth=1.2, label=label,
        )
        for point in points:
            if "target" in point:
                axis.annotate(f"{point['target']:g}", (point["relative_hardness"], point["same_label_share"]),
                              textcoords="offset points", xytext=(4, -10), fontsize=7, alpha=0.7)
    for (label, point), (marker, colour) in zip((references or {}).items(), _REFERENCE_STYLES * 4):
        axis.scatter([point["relative_hardness"]], [point["same_label_share"]], marker=marker, s=46, zorder=3,
                     color=colour, edgecolors="black", linewidths=0.6, label=label)
    _finish(axis, "Hardness against false negatives (labels: target_hardness)", "same-label share of in-batch pairs")
    axis.set_xlabel("relative hardness (0: uniform batches, 1: exact kNN batches)")
    return save_png(figure, path, dpi=110)
