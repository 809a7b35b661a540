"""One table of arms from several ``reproduce vision`` or ``reproduce text`` output directories, paired with uniform.

Every run in the given ``simclr_runs.json`` (SimCLR) or ``simcse_runs.json`` (SimCSE) files is
an *arm* (sampler, temperature, the sampler settings of :mod:`batchsampler.integrations._arms`
and, for SimCSE, the head) at a seed; one table holds one kind. For each arm: the final metrics
(SimCLR: kNN and linear-probe accuracy; SimCSE: STS-B test and the best STS-B dev score, the
one that selected the checkpoint), mean ± std over seeds and per seed, the paired difference to
the uniform run of the same temperature (and head) and seed (mean ± sample std over the seeds both have),
and the relative hardness of its batches (0: uniform, 1: exact kNN batches) in the sampler's
bank and in the eval-mode encoding of the training set, averaged over the epochs after the
first; with a ``target_hardness``, how many of those epochs lie within 0.1 of the target in
the bank. Used for the factor tables of issue 15 in ``examples/RESULTS.md``.

    python examples/paired_table.py examples/simclr/factors/* --output examples/simclr/factors/table.md
    python examples/paired_table.py examples/simcse examples/simcse/factors/* --output examples/simcse/factors/table.md

SimCSE runs go by steps, not epochs: their hardness columns are the in-batch cosine of their
batches in the starting model's space (``batch_stats``), not relative hardness per epoch.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from batchsampler.integrations._arms import arm_key
from batchsampler.integrations.text.reproduce import text_arm_label

from batchsampler._io import write_text


KINDS = {
    "simclr_runs.json": (("knn_accuracy", "kNN accuracy %"), ("linear_accuracy", "linear probe %")),
    "simcse_runs.json": (("sts_test", "STS-B test"), ("best_dev", "STS-B dev (selection)")),
}
"""Run files this script reads, and the two metrics of each (fractions in SimCLR files, already
x100 in SimCSE files; the table shows both x100)."""


def _head(config: dict) -> str:
    return config.get("head", "none")


def _arm(config: dict) -> tuple:
    # The integrations' arm key (sampler and its settings), apart by temperature and head too.
    return (*arm_key(config), config["temperature"], _head(config))


def _label(config: dict) -> str:
    # text_arm_label is arm_label plus the head (SimCSE's option), and arm_label on other runs.
    return f"{text_arm_label(config)}, t={config['temperature']:g}"


def _metric(run: dict, name: str) -> float | None:
    """``name`` of ``run`` in %: SimCLR records fractions, SimCSE scores (x100 already)."""
    if name == "sts_test":
        return run.get("scores", {}).get("STS-B test")
    if name == "best_dev":
        return run.get("best_dev")
    value = run.get(name)
    return None if value is None else 100 * value


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def rows(runs: list[dict], metrics: Sequence[str] = ("knn_accuracy", "linear_accuracy")) -> list[dict]:
    """One summary row per arm, in first-seen order (see the module docstring)."""
    arms: dict[tuple, list[dict]] = {}
    for run in runs:
        arms.setdefault(_arm(run["config"]), []).append(run)

    def pairing(config: dict) -> tuple:
        return config["temperature"], _head(config), config["seed"]

    uniform = {pairing(r["config"]): r for r in runs
               if r["config"]["sampler"] == "uniform" and not r["config"].get("replacement", False)}
    found = []
    for group in arms.values():
        config = group[0]["config"]
        group = sorted(group, key=lambda r: r["config"]["seed"])
        row = {"arm": _label(config), "runs": len(group), "seeds": [r["config"]["seed"] for r in group]}
        for metric in metrics:
            values = [_metric(r, metric) for r in group if _metric(r, metric) is not None]
            row[metric] = (float(np.mean(values)), float(np.std(values))) if values else None
            row[f"{metric}_per_seed"] = values
            pairs = []
            for r in group:
                partner = uniform.get(pairing(r["config"]))
                if partner is not None and _metric(r, metric) is not None and _metric(partner, metric) is not None:
                    pairs.append(_metric(r, metric) - _metric(partner, metric))
            row[f"{metric}_paired"] = (float(np.mean(pairs)), float(np.std(pairs, ddof=1)) if len(pairs) > 1 else None,
                                       len(pairs)) if pairs else None
        # The epochs after each run's uniform warm-up (records without the setting had one).
        later = [e for r in group for e in r.get("epochs", []) if e["epoch"] >= r["config"].get("warmup_epochs", 1)]
        row["relative_hardness"] = _mean([e.get("relative_hardness") for e in later])
        row["encoded_relative_hardness"] = _mean([e.get("encoded_relative_hardness") for e in later])
        row["planned_hardness"] = _mean([e.get("planned_hardness") for e in later])
        row["same_label_share"] = _mean([e.get("same_label_share") for e in later])
        row["in_batch_cosine"] = _mean([(r.get("batch_stats") or {}).get("mean_similarity") for r in group])
        target = config.get("target_hardness")
        measured = [e["relative_hardness"] for e in later if e.get("relative_hardness") is not None]
        walked = [e["planned_hardness"] for e in later if e.get("planned_hardness") is not None]
        row["epochs_on_target"], row["walked_on_target"] = (
            (sum(abs(value - target) <= 0.1 for value in values), len(values))
            if target is not None and values else None for values in (measured, walked)
        )
        found.append(row)
    return found


def markdown(found: list[dict], metrics: Sequence[tuple[str, str]] = KINDS["simclr_runs.json"]) -> str:
    def number(value, digits=3):
        return "—" if value is None else f"{value:.{digits}f}"

    def paired(value):
        if value is None:
            return "—"
        mean, std, count = value
        return f"{mean:+.2f}" + ("" if std is None else f" ± {std:.2f}") + f" ({count})"

    def on_target(value, walked=None):
        cell = "—" if value is None else f"{value[0]}/{value[1]}"
        return cell if walked is None else f"{cell} (as walked {walked[0]}/{walked[1]})"

    def spread(value):
        return "—" if value is None else f"{value[0]:.2f} ± {value[1]:.2f}"

    (first, first_name), (second, second_name) = metrics
    text = first == "sts_test"
    hardness = ("in-batch cosine (starting model) |" if text else
                "relative hardness (bank) | as walked | epochs within 0.1 of the target | "
                "relative hardness (eval encoding) | same-label share |")
    lines = [f"| arm | runs | {first_name} | per seed | paired to uniform | {second_name} | paired to uniform | {hardness}",
             "|---|---|---|---|---|---|---|" + ("---|" if text else "---|---|---|---|---|")]
    for row in found:
        cells = (f"{number(row['in_batch_cosine'])} |" if text else
                 f"{number(row['relative_hardness'])} | {number(row['planned_hardness'])} | "
                 f"{on_target(row['epochs_on_target'], row.get('walked_on_target'))} | "
                 f"{number(row['encoded_relative_hardness'])} | {number(row['same_label_share'])} |")
        lines.append(
            f"| {row['arm']} | {row['runs']} | {spread(row[first])} | "
            f"{' / '.join(f'{v:.1f}' for v in row[f'{first}_per_seed'])} | {paired(row[f'{first}_paired'])} | "
            f"{spread(row[second])} | {paired(row[f'{second}_paired'])} | {cells}"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directories", nargs="+", type=Path,
                        help="reproduce output directories (simclr_runs.json or simcse_runs.json) or the files")
    parser.add_argument("--output", type=Path, default=None, help="also write the table here")
    args = parser.parse_args(argv)
    runs, kinds = [], set()
    for directory in args.directories:
        found = [directory / name for name in KINDS] if directory.is_dir() else [directory]
        found = [path for path in found if path.is_file() and path.name in KINDS]
        if not found:
            parser.error(f"{directory}: no {' or '.join(KINDS)}")
        for path in found:
            kinds.add(path.name)
            runs += json.loads(path.read_text())["runs"]
    if len(kinds) > 1:
        parser.error(f"one kind of run per table, got {sorted(kinds)}")
    metrics = KINDS[kinds.pop()]
    table = markdown(rows(runs, [name for name, _ in metrics]), metrics)
    if args.output is not None:
        write_text(args.output, table)
    sys.stdout.write(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
