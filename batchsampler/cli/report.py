"""``batchsampler report RUN.json``: PNG plots and a summary of recorded training runs.

RUN.json files come from :class:`batchsampler.diagnostics.SamplerMonitor` (``to_json``) or
from ``batchsampler demo``; several files are merged (runs of the same name: the later file
wins). matplotlib is imported only when the plots are drawn.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..diagnostics import load_runs, merge_runs


def add_parser(commands: Any) -> None:
    report = commands.add_parser(
        "report",
        help="plot hardness, false negatives, metrics and sampler overhead from RUN.json files",
        description=(
            "Read RUN.json files written by SamplerMonitor.to_json or `batchsampler demo`, print the "
            "last epoch of every run and write hardness.png, false_negatives.png, metrics.png (when "
            "metrics were recorded), overhead.png and graph.png (when graph statistics were recorded). "
            "Runs named GROUP@SUFFIX (e.g. one per seed) are drawn as one group."
        ),
    )
    report.add_argument("runs", type=Path, nargs="+", metavar="RUN.json", help="one or more RUN.json files")
    report.add_argument(
        "-o", "--output-dir", type=Path, default=None,
        help="directory for the PNG files (default: the directory of the first RUN.json)",
    )
    report.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..diagnostics.plots import plot_runs

    document = merge_runs(*(load_runs(path) for path in args.runs))
    output = args.output_dir if args.output_dir is not None else args.runs[0].parent
    print(summary_table(document))
    for path in plot_runs(document, output):
        print(f"wrote {path}")
    return 0


def summary_table(document: dict[str, Any]) -> str:
    """One line per run: its last epoch's hardness, same-label share, sampler time and metrics."""
    header = f"{'run':<24}{'epochs':>7}{'in-batch cos':>14}{'same-label':>12}{'sampler s':>11}{'% of step':>11}  metrics"
    lines = [header, "-" * len(header)]
    for name, records in document["runs"].items():
        if not records:
            lines.append(f"{name:<24}{0:>7}")
            continue
        last = records[-1]
        hardness = (last.get("hardness") or {}).get("mean")
        timing = last.get("timing") or {}
        share = timing.get("sampler_share")
        metrics = ", ".join(f"{key} {_number(value)}" for key, value in (last.get("metrics") or {}).items())
        lines.append(
            f"{name:<24}{len(records):>7}{_number(hardness):>14}{_number(last.get('same_label_share')):>12}"
            f"{_number(timing.get('sampler_seconds')):>11}{_number(None if share is None else 100 * share, 1):>11}  {metrics}"
        )
    lines.append("(last epoch of each run)")
    return "\n".join(lines)


def _number(value: Any, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"
