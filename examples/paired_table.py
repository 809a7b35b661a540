"""One table of arms from several ``reproduce vision`` (SimCLR) output directories, paired with uniform.

Every run in the given ``simclr_runs.json`` files is an *arm* (sampler, temperature and the
sampler settings of :mod:`batchsampler.integrations._arms`) at a seed. For each arm: the final
kNN and linear-probe accuracy (mean ± std over seeds, and per seed), the paired difference to
the uniform run of the same temperature and seed (mean ± sample std over the seeds both have),
and the relative hardness of its batches (0: uniform, 1: exact kNN batches) in the sampler's
bank and in the eval-mode encoding of the training set, averaged over the epochs after the
first; with a ``target_hardness``, how many of those epochs lie within 0.1 of the target in
the bank. Used for the factor tables of issue 15 in ``examples/RESULTS.md``.

    python examples/paired_table.py examples/simclr/factors/* --output examples/simclr/factors/table.md
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from batchsampler.integrations._arms import arm_label

from batchsampler._io import write_text


def _arm(config: dict) -> tuple:
    return (config["sampler"], config["temperature"], config.get("bank", "projection"),
            config.get("target_hardness"), bool(config.get("replacement", False)))


def _label(config: dict) -> str:
    return f"{arm_label(config)}, t={config['temperature']:g}"


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def rows(runs: list[dict]) -> list[dict]:
    """One summary row per arm, in first-seen order (see the module docstring)."""
    arms: dict[tuple, list[dict]] = {}
    for run in runs:
        arms.setdefault(_arm(run["config"]), []).append(run)
    uniform = {(r["config"]["temperature"], r["config"]["seed"]): r for r in runs
               if r["config"]["sampler"] == "uniform" and not r["config"].get("replacement", False)}
    found = []
    for group in arms.values():
        config = group[0]["config"]
        row = {"arm": _label(config), "runs": len(group), "seeds": sorted(r["config"]["seed"] for r in group)}
        for metric in ("knn_accuracy", "linear_accuracy"):
            values = [100 * r[metric] for r in group if r.get(metric) is not None]
            row[metric] = (float(np.mean(values)), float(np.std(values))) if values else None
            row[f"{metric}_per_seed"] = [100 * r[metric] for r in sorted(group, key=lambda r: r["config"]["seed"])
                                         if r.get(metric) is not None]
            pairs = [100 * (r[metric] - uniform[(config["temperature"], r["config"]["seed"])][metric]) for r in group
                     if (config["temperature"], r["config"]["seed"]) in uniform and r.get(metric) is not None
                     and uniform[(config["temperature"], r["config"]["seed"])].get(metric) is not None]
            row[f"{metric}_paired"] = (float(np.mean(pairs)), float(np.std(pairs, ddof=1)) if len(pairs) > 1 else None,
                                       len(pairs)) if pairs else None
        later = [e for r in group for e in r["epochs"] if e["epoch"] > 0]
        row["relative_hardness"] = _mean([e.get("relative_hardness") for e in later])
        row["encoded_relative_hardness"] = _mean([e.get("encoded_relative_hardness") for e in later])
        row["same_label_share"] = _mean([e.get("same_label_share") for e in later])
        target = config.get("target_hardness")
        measured = [e["relative_hardness"] for e in later if e.get("relative_hardness") is not None]
        row["epochs_on_target"] = (
            (sum(abs(value - target) <= 0.1 for value in measured), len(measured))
            if target is not None and measured else None
        )
        found.append(row)
    return found


def markdown(found: list[dict]) -> str:
    def number(value, digits=3):
        return "—" if value is None else f"{value:.{digits}f}"

    def paired(value):
        if value is None:
            return "—"
        mean, std, count = value
        return f"{mean:+.2f}" + ("" if std is None else f" ± {std:.2f}") + f" ({count})"

    def on_target(value):
        return "—" if value is None else f"{value[0]}/{value[1]}"

    lines = ["| arm | runs | kNN accuracy % | per seed | paired to uniform | linear probe % | paired to uniform | "
             "relative hardness (bank) | epochs within 0.1 of the target | relative hardness (eval encoding) | "
             "same-label share |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in found:
        knn, linear = row["knn_accuracy"], row["linear_accuracy"]
        lines.append(
            f"| {row['arm']} | {row['runs']} | {knn[0]:.2f} ± {knn[1]:.2f} | "
            f"{' / '.join(f'{v:.1f}' for v in row['knn_accuracy_per_seed'])} | {paired(row['knn_accuracy_paired'])} | "
            f"{'—' if linear is None else f'{linear[0]:.2f} ± {linear[1]:.2f}'} | {paired(row['linear_accuracy_paired'])} | "
            f"{number(row['relative_hardness'])} | {on_target(row['epochs_on_target'])} | "
            f"{number(row['encoded_relative_hardness'])} | "
            f"{number(row['same_label_share'])} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directories", nargs="+", type=Path, help="reproduce output directories (simclr_runs.json)")
    parser.add_argument("--output", type=Path, default=None, help="also write the table here")
    args = parser.parse_args(argv)
    runs = []
    for directory in args.directories:
        path = directory / "simclr_runs.json" if directory.is_dir() else directory
        if not path.exists():
            parser.error(f"{path}: no simclr_runs.json")
        runs += json.loads(path.read_text())["runs"]
    table = markdown(rows(runs))
    if args.output is not None:
        write_text(args.output, table)
    sys.stdout.write(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
