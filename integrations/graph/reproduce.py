"""The graph table of the paper at CPU scale: datasets x samplers x losses x seeds.

Every run trains GraphCL for the same number of epochs, hence the same number of optimisation
steps whatever the sampler (all samplers yield ``ceil(N / B)`` batches per epoch). Writes
``graphcl_runs.json`` (every run), ``graphcl_table.md`` (mean ± std over seeds, with the
authors' numbers beside ours) and ``graphcl_accuracy.png`` to ``--output-dir``.

    python examples/reproduce_graphcl.py --root ../shared/data/tu --seeds 5
    batchsampler reproduce graph --quick          # the CI smoke run
    batchsampler reproduce graph --bank backbone --samplers uniform batchsampler

``--bank`` chooses the space of the embeddings fed back to the sampler (projection-head
outputs, the GIN embeddings before the head, or both); ``--target-hardness`` is passed to the
BatchSampler runs only and ``--replacement`` to every sampler. All three are recorded in each
run's config, and the table and chart keep arms with different settings apart.
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
from tqdm.auto import tqdm

from ..._io import write_text
from ...cli._progress import add_progress_flag, progress_wanted
from ...diagnostics.plots import save_png
from .. import require_extra
from .._arms import (
    add_run_flags,
    arm_key,
    arm_label,
    check_target_flag,
    target_settings,
)

__all__ = ["PAPER_ACCURACY", "main", "markdown_table", "run_grid"]

logger = logging.getLogger(__name__)

PAPER_ACCURACY = {
    "MUTAG": {"uniform": (86.80, 1.34), "knn": (86.46, 0.82), "batchsampler": (87.78, 0.93)},
    "PROTEINS": {"uniform": (74.39, 0.45), "knn": (74.17, 0.41), "batchsampler": (75.04, 0.67)},
    "IMDB-BINARY": {"uniform": (70.90, 0.53), "knn": (70.72, 0.35), "batchsampler": (71.90, 0.46)},
}
"""GraphCL (NT-Xent) accuracy, mean and std in %, from the authors' README."""


def run_grid(
    root: str | Path,
    datasets: Sequence[str],
    samplers: Sequence[str],
    losses: Sequence[str],
    seeds: Sequence[int],
    *,
    checkpoint: Path | None = None,
    progress: bool = True,
    target_hardness: float | None = None,
    max_candidate_walks: int | None = None,
    **config_overrides,
) -> list[dict]:
    """Train and evaluate every combination; returns one record per run.

    ``config_overrides`` are :class:`~batchsampler.integrations.graph.train.GraphCLConfig`
    fields shared by every run (e.g. ``bank``, ``replacement``); ``target_hardness`` and
    ``max_candidate_walks`` are set on the ``"batchsampler"`` runs only.

    ``progress``: draw a bar over the runs (the command line: only when stderr is a terminal).

    With ``checkpoint``, the runs so far are rewritten to that JSON file after every run, so an
    interrupted grid keeps what it measured.
    """
    from .data import load_tu_dataset
    from .train import GraphCLConfig, train_graphcl

    runs = []
    grid = [(d, s, loss, seed) for d in datasets for s in samplers for loss in losses for seed in seeds]
    loaded = {}
    for dataset_name, sampler, loss, seed in tqdm(grid, desc="GraphCL runs", unit="run", disable=not progress):
        if dataset_name not in loaded:
            loaded[dataset_name] = load_tu_dataset(dataset_name, root)
        config = GraphCLConfig(sampler=sampler, loss=loss, seed=seed,
                           **target_settings(sampler, target_hardness, max_candidate_walks), **config_overrides)
        result = train_graphcl(loaded[dataset_name], config)
        result["dataset"] = dataset_name
        runs.append(result)
        if checkpoint is not None:
            write_text(checkpoint, json.dumps({"partial": True, "runs": runs}, indent=1))
        logger.info("%s %s %s seed %d: %.2f%%", dataset_name, sampler, loss, seed, 100 * result["accuracy"])
    return runs


def markdown_table(runs: list[dict]) -> str:
    """Mean ± std (over seeds) of the accuracy in %, per dataset, loss and arm (the sampler
    with its bank space, target hardness and replacement when not the defaults, see
    :func:`~batchsampler.integrations._arms.arm_label`). The authors' number is shown beside
    the NT-Xent arms that use their setting (projection bank, no target, no replacement)."""
    datasets = sorted({r["dataset"] for r in runs})
    rows = sorted({(r["config"]["loss"], arm_label(r["config"])) for r in runs})
    lines = ["| loss | sampler | " + " | ".join(datasets) + " |", "|---|---|" + "---|" * len(datasets)]
    for loss, arm in rows:
        cells = []
        for dataset in datasets:
            values = [100 * r["accuracy"] for r in runs
                      if r["dataset"] == dataset and arm_label(r["config"]) == arm and r["config"]["loss"] == loss]
            cell = f"{np.mean(values):.2f} ± {np.std(values):.2f} (n={len(values)})" if values else "—"
            paper = PAPER_ACCURACY.get(dataset, {}).get(arm)
            if paper and loss == "ntxent":
                cell += f"; paper {paper[0]:.2f} ± {paper[1]:.2f}"
            cells.append(cell)
        lines.append(f"| {loss} | {arm} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def bar_chart(runs: list[dict], path: Path) -> None:
    """Grouped bars of mean accuracy ± std per dataset, one bar per (loss, arm)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = sorted({r["dataset"] for r in runs})
    groups = sorted({(r["config"]["loss"], arm_label(r["config"])) for r in runs})
    width = 0.8 / len(groups)
    figure, axis = plt.subplots(figsize=(2 + 2.5 * len(datasets), 4))
    for g, (loss, sampler) in enumerate(groups):
        means, stds = [], []
        for dataset in datasets:
            values = [100 * r["accuracy"] for r in runs
                      if r["dataset"] == dataset and arm_label(r["config"]) == sampler and r["config"]["loss"] == loss]
            means.append(np.mean(values) if values else np.nan)
            stds.append(np.std(values) if values else 0.0)
        axis.bar(np.arange(len(datasets)) + g * width, means, width, yerr=stds, label=f"{loss} / {sampler}", capsize=2)
    axis.set_xticks(np.arange(len(datasets)) + width * (len(groups) - 1) / 2, datasets)
    axis.set_ylabel("10-fold SVM accuracy (%)")
    low = np.nanmin([100 * r["accuracy"] for r in runs])
    axis.set_ylim(max(0, low - 10), 100)
    axis.legend(fontsize=7, ncol=2)
    axis.set_title("GraphCL with uniform, kNN and BatchSampler batches")
    figure.tight_layout()
    save_png(figure, path, dpi=120)
    plt.close(figure)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="batchsampler reproduce graph", description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path("../shared/data/tu"),
                        help="directory with NAME/raw/ TU files (default: %(default)s)")
    parser.add_argument("--datasets", nargs="+", default=["MUTAG", "PROTEINS", "IMDB-BINARY"])
    parser.add_argument("--samplers", nargs="+", default=["uniform", "knn", "batchsampler"])
    parser.add_argument("--losses", nargs="+", default=["ntxent", "dcl", "hcl"])
    parser.add_argument("--seeds", type=int, default=5, help="number of seeds (default: %(default)s)")
    parser.add_argument("--first-seed", type=int, default=0,
                        help="seeds are first .. first + n - 1 (default: %(default)s), to extend a grid")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--k", type=int, default=None, help="graph out-degree (default: scaled to N)")
    parser.add_argument("--m", type=int, default=None, help="candidates per node (default: scaled to N)")
    parser.add_argument("--restart-prob", type=float, default=0.2)
    add_run_flags(parser, features='GIN embeddings')
    parser.add_argument("--output-dir", type=Path, default=Path("results/graphcl"))
    parser.add_argument("--quick", action="store_true", help="MUTAG, 2 epochs, 1 seed, NT-Xent: a smoke run")
    parser.add_argument("--from-json", type=Path, nargs="+", default=None, metavar="RUNS_JSON",
                        help="train nothing: tabulate and chart the runs of these graphcl_runs.json files together")
    add_progress_flag(parser)
    args = parser.parse_args(argv)
    if args.from_json:
        return _tabulate(args.from_json, args.output_dir)
    check_target_flag(parser, args)
    if args.seeds < 1 or args.first_seed < 0:
        parser.error(f"--seeds must be >= 1 and --first-seed >= 0, got {args.seeds} and {args.first_seed}")
    require_extra("graph")
    if args.quick:
        args.datasets, args.losses, args.seeds, args.epochs = ["MUTAG"], ["ntxent"], 1, 2
    args.output_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    runs = run_grid(
        args.root, args.datasets, args.samplers, args.losses, range(args.first_seed, args.first_seed + args.seeds),
        epochs=args.epochs,
        batch_size=args.batch_size, k=args.k, m=args.m, restart_prob=args.restart_prob,
        bank=args.bank, target_hardness=args.target_hardness, replacement=args.replacement,
        drift_epochs=args.drift_epochs, warmup_epochs=args.warmup_epochs, max_candidate_walks=args.max_candidate_walks,
        checkpoint=args.output_dir / "graphcl_runs.json", progress=progress_wanted(args.no_progress),
    )
    wall = time.perf_counter() - start
    argv = list(sys.argv[1:] if argv is None else argv)
    write_text(args.output_dir / "graphcl_runs.json", json.dumps({"argv": argv, "wall_seconds": wall, "runs": runs}, indent=1))
    _write_report(runs, args.output_dir)
    print(f"\n{len(runs)} runs in {wall:.0f} s; results in {args.output_dir}")
    return 0


def _write_report(runs: list[dict], output_dir: Path) -> None:
    table = markdown_table(runs)
    write_text(output_dir / "graphcl_table.md", table + "\n")
    bar_chart(runs, output_dir / "graphcl_accuracy.png")
    print(table)


def _tabulate(paths: Sequence[Path], output_dir: Path) -> int:
    """Table and chart of the runs of several JSON files (e.g. a grid extended with ``--first-seed``).

    Raises:
        ValueError: if a file has no runs, or two files hold the same run (dataset, loss, seed and
            arm: sampler, bank, target hardness, replacement).
    """
    runs, seen = [], {}
    for path in paths:
        found = json.loads(Path(path).read_text()).get("runs") or []
        if not found:
            raise ValueError(f"--from-json: {path} holds no runs")
        for run in found:
            key = (run["dataset"], run["config"]["loss"], run["config"]["seed"], *arm_key(run["config"]))
            if key in seen:
                raise ValueError(f"--from-json: run {key} is in both {seen[key]} and {path}")
            seen[key] = path
            runs.append(run)
    output_dir.mkdir(parents=True, exist_ok=True)
    _write_report(runs, output_dir)
    print(f"\n{len(runs)} runs from {len(paths)} files; results in {output_dir}")
    return 0
