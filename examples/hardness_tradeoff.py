"""How hard against how many false negatives: ``target_hardness`` swept on the digits.

For every target in ``--targets`` and both epoch modes (exactly-once, replacement), a
``BatchSampler(target_hardness=...)`` walks ``--epochs`` epochs on scikit-learn's bundled digits
(centred pixels, 1797 x 64, the ``batchsampler demo`` data; no download), and the last epoch is
measured: relative hardness on the sampler's bank (0: uniform batches, 1: exact kNN batches,
:mod:`batchsampler.hardness`), overall and per quarter, and the share of in-batch pairs with the
same digit (the false-negative proxy). Uniform and kNN batches are measured the same way as
references. Writes ``tradeoff.json``, ``tradeoff.md`` and ``tradeoff.png`` to ``--output-dir``.

    python examples/hardness_tradeoff.py --seeds 5 --output-dir examples/hardness
    python examples/hardness_tradeoff.py --quick            # CI smoke run
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from batchsampler import SAMPLERS, BatchSampler
from batchsampler._io import write_text
from batchsampler.cli.demo import load_digits_embeddings
from batchsampler.diagnostics import summarize_epoch
from batchsampler.diagnostics.plots import plot_hardness_tradeoff
from batchsampler.hardness import epoch_profile

logger = logging.getLogger("hardness_tradeoff")

MODES = {"exactly once": False, "replacement": True}


def measure(sampler, batches, embeddings, labels) -> dict:
    """Relative hardness (overall, by quarter) and same-label share of one epoch's batches."""
    profile = epoch_profile(embeddings, batches, sampler.global_batch_size, np.random.default_rng(0))
    share = summarize_epoch(batches, len(labels), labels=labels).same_label_share
    return {"relative_hardness": profile["relative_hardness"], "by_quarter": profile["by_part"],
            "same_label_share": share}


def run_one(name: str, seed: int, embeddings, labels, batch_size: int, epochs: int, **options) -> dict:
    """``epochs`` epochs of one sampler; the last one measured."""
    sampler = SAMPLERS[name](len(embeddings), batch_size, seed=seed, embeddings=embeddings, **options)
    for _ in range(epochs):
        batches = list(sampler)
    result = measure(sampler, batches, embeddings, labels)
    if isinstance(sampler, BatchSampler):
        result |= {"k": sampler.refresh_stats.k, "m": sampler.refresh_stats.m,
                   "calibration_builds": sampler.refresh_stats.calibration_builds}
    return result


def _summary(results: list[dict]) -> dict:
    point = {}
    for key in ("relative_hardness", "same_label_share"):
        values = np.array([r[key] for r in results], dtype=np.float64)
        point[key], point[f"{key}_std"] = float(values.mean()), float(values.std(ddof=1) if len(values) > 1 else 0.0)
    point["by_quarter"] = np.mean([r["by_quarter"] for r in results], axis=0).round(4).tolist()
    point["worst_seed_error"] = None
    return point


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", type=float, nargs="+", default=[0.0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0])
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0 .. n-1 (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per run; the last is measured")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--output-dir", type=Path, default=Path("examples/hardness"))
    parser.add_argument("--quick", action="store_true", help="2 targets, 1 seed, 1 epoch (a smoke run)")
    args = parser.parse_args(argv)
    if args.quick:
        args.targets, args.seeds, args.epochs = [0.25, 0.5], 1, 1
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    embeddings, labels = load_digits_embeddings()
    started = time.perf_counter()
    seeds = range(args.seeds)
    curves: dict[str, list[dict]] = {}
    runs: dict[str, list[dict]] = {}
    jobs = [(mode, target) for mode in MODES for target in args.targets]
    for mode, target in tqdm(jobs, desc="targets", disable=not sys.stderr.isatty()):
        results = [run_one("batchsampler", seed, embeddings, labels, args.batch_size, args.epochs,
                           target_hardness=target, replacement=MODES[mode]) for seed in seeds]
        runs[f"{mode} target={target:g}"] = results
        point = _summary(results) | {"target": target}
        point["worst_seed_error"] = float(max(abs(r["relative_hardness"] - target) for r in results))
        curves.setdefault(mode, []).append(point)
    references = {}
    for name, label, options in (
        ("uniform", "uniform batches", {}), ("knn", "kNN batches", {}), ("batchsampler", "BatchSampler defaults", {}),
        # The same graphs and walks, with guided re-seeds: what they do to the late batches.
        ("batchsampler", "BatchSampler defaults, reseed_candidates=32", {"reseed_candidates": 32}),
    ):
        results = [run_one(name, seed, embeddings, labels, args.batch_size, args.epochs, **options) for seed in seeds]
        runs[label] = results
        references[label] = _summary(results)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    document = {"command": " ".join(["python examples/hardness_tradeoff.py", *(argv or sys.argv[1:])]),
                "seconds": time.perf_counter() - started, "batch_size": args.batch_size, "epochs": args.epochs,
                "seeds": args.seeds, "curves": curves, "references": references, "runs": runs}
    write_text(args.output_dir / "tradeoff.json", json.dumps(document, indent=1))
    write_text(args.output_dir / "tradeoff.md", markdown(curves, references))
    plot_hardness_tradeoff(curves, args.output_dir / "tradeoff.png", references=references)
    print(markdown(curves, references))
    return 0


def markdown(curves: dict[str, list[dict]], references: dict[str, dict]) -> str:
    lines = ["| setting | target | relative hardness | worst seed's distance to target | by quarter | same-label share |",
             "|---|---|---|---|---|---|"]
    for mode, points in curves.items():
        for p in points:
            lines.append(
                f"| {mode} | {p['target']:g} | {p['relative_hardness']:.3f} ± {p['relative_hardness_std']:.3f} | "
                f"{p['worst_seed_error']:.3f} | {' / '.join(f'{q:.2f}' for q in p['by_quarter'])} | "
                f"{p['same_label_share']:.3f} ± {p['same_label_share_std']:.3f} |"
            )
    for label, p in references.items():
        lines.append(
            f"| {label} | - | {p['relative_hardness']:.3f} ± {p['relative_hardness_std']:.3f} | - | "
            f"{' / '.join(f'{q:.2f}' for q in p['by_quarter'])} | {p['same_label_share']:.3f} ± {p['same_label_share_std']:.3f} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
