"""Why does (or doesn't) BatchSampler help GraphCL? One hyperparameter moved at a time.

Around the defaults of :class:`~batchsampler.integrations.graph.train.GraphCLConfig`, each variant changes a
single setting of the sampler (``k``, ``m``, ``restart_prob``, ``refresh_every``,
``warmup_epochs``) or the batch size (with a uniform run at the same batch size beside it), and
trains GraphCL over several seeds. For every variant it reports the SVM accuracy and the batch
statistics the sampler is meant to move: the mean in-batch cosine similarity of the bank
(hardness) and the share of same-label pairs (false negatives), averaged over the epochs that
walked a graph. Writes ``sweep_runs.json``, ``sweep_table.md`` and ``sweep.png``.
``--bank`` sets the bank space of every variant (see ``GraphCLConfig.bank``); hardness is
measured in that space.

    python examples/sweep_graphcl.py --dataset MUTAG --seeds 3
    python examples/sweep_graphcl.py --quick          # 2 variants, 2 epochs: a smoke run
    python examples/sweep_graphcl.py --from-runs old/ rerun/ --output-dir merged/   # one table, no training
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
from .._arms import BANK_SPACES, MAX_CANDIDATE_WALKS_HELP

__all__ = ["factor_variants", "main", "markdown_table", "merge_runs", "run_sweep", "summarize", "variants"]

logger = logging.getLogger(__name__)


def variants(num_graphs: int, batch_size: int = 128) -> list[tuple[str, dict]]:
    """``(label, GraphCLConfig overrides)`` of every variant for a dataset of ``num_graphs``.

    The defaults come first (BatchSampler and uniform); each other variant moves one setting
    to a smaller and a larger value than its default, within what the dataset allows.
    """
    if num_graphs < 4:
        raise ValueError(f"num_graphs must be >= 4, got {num_graphs}")
    from .train import GraphCLConfig, sampler_options

    defaults = sampler_options(GraphCLConfig(batch_size=batch_size), num_graphs)
    k, m, per_epoch = defaults["k"], defaults["m"], defaults["refresh_every"]
    small_batch = max(2, batch_size // 4)
    found: list[tuple[str, dict]] = [
        ("defaults", {}),
        ("uniform", {"sampler": "uniform"}),
        (f"B={small_batch}", {"batch_size": small_batch}),
        (f"uniform B={small_batch}", {"sampler": "uniform", "batch_size": small_batch}),
    ]
    for value in sorted({max(1, k // 4), min(num_graphs - 1, 4 * k)} - {k}):
        found.append((f"k={value}", {"k": value, "m": max(m, value)}))
    for value in sorted({max(k, m // 4), min(num_graphs - 1, 4 * m)} - {m}):
        found.append((f"m={value}", {"m": value}))
    for value in (0.05, 0.5, 0.8):
        found.append((f"alpha={value}", {"restart_prob": value}))
    found.append((f"refresh every {5 * per_epoch} batches", {"refresh_every": 5 * per_epoch}))
    for value in (0, 5):
        found.append((f"warm-up {value} epochs", {"warmup_epochs": value}))
    return found


def factor_variants(num_graphs: int, batch_size: int = 32) -> list[tuple[str, dict]]:
    """The factors of issue 15, one at a time around the defaults, with uniform batches first.

    Exactly-once against replacement epochs; the projection against the backbone bank and an
    eval-mode encoding after every epoch (``bank="encoded"``); ``k``
    relative to the batch size (``B / 8``, ``B / 2``, ``B``, ``2 B``, within ``N - 1``); and
    ``target_hardness`` 0.25, 0.5, 0.75. Every variant has the same batch size, so the same
    step budget as the uniform runs it is paired with.
    """
    if num_graphs < 4:
        raise ValueError(f"num_graphs must be >= 4, got {num_graphs}")
    from .train import GraphCLConfig, sampler_options

    m = sampler_options(GraphCLConfig(batch_size=batch_size), num_graphs)["m"]
    found: list[tuple[str, dict]] = [
        ("uniform", {"sampler": "uniform"}),
        ("defaults", {}),
        ("replacement", {"replacement": True}),
        ("uniform, replacement", {"sampler": "uniform", "replacement": True}),
        ("backbone bank", {"bank": "backbone"}),
        ("encoded bank", {"bank": "encoded"}),
    ]
    for label, value in (("B/8", batch_size // 8), ("B/2", batch_size // 2), ("B", batch_size), ("2B", 2 * batch_size)):
        k = min(max(1, value), num_graphs - 1)
        found.append((f"k={k} ({label})", {"k": k, "m": max(m, k)}))
    for target in (0.25, 0.5, 0.75):
        found.append((f"target={target}", {"target_hardness": target}))
    # The controller sees the bank: with rows from train-mode steps, batch normalisation hides
    # in-batch similarity (see _arms.BANK_SPACES), so targets are also run on the encoded bank.
    found.append(("encoded bank, replacement", {"bank": "encoded", "replacement": True}))
    for target in (0.25, 0.5, 0.75):
        found.append((f"encoded bank, target={target}", {"bank": "encoded", "target_hardness": target}))
    return found


def run_sweep(
    dataset, chosen: Sequence[tuple[str, dict]], seeds: Sequence[int], *, checkpoint: Path | None = None,
    progress: bool = True, **config_overrides,
) -> list[dict]:
    """Train every variant with every seed; one record per run, ``record["variant"]`` its label."""
    from .train import GraphCLConfig, train_graphcl

    runs = []
    grid = [(label, overrides, seed) for label, overrides in chosen for seed in seeds]
    for label, overrides, seed in tqdm(grid, desc="GraphCL sweep", unit="run", disable=not progress):
        config = GraphCLConfig(seed=seed, **{"sampler": "batchsampler", **config_overrides, **overrides})
        result = train_graphcl(dataset, config)
        result["variant"] = label
        runs.append(result)
        if checkpoint is not None:
            write_text(checkpoint, json.dumps({"partial": True, "runs": runs}, indent=1))
        logger.info("%s seed %d: %.2f%%", label, seed, 100 * result["accuracy"])
    return runs


def summarize(runs: list[dict]) -> list[dict]:
    """Per variant (in first-seen order): accuracy mean/std in %, and batch statistics.

    Hardness and same-label share are averaged over the epochs whose batches came from a graph
    (``graph_version > 0``; for uniform runs, over the epochs after the first). With a
    ``target_hardness``, ``epochs_on_target`` is the share of those epochs whose relative
    hardness in the bank lies within 0.1 of the target, ``planned_hardness`` the mean of the
    same epochs as walked (on the bank of their walk, before training on them) and
    ``walked_on_target`` the share of them within 0.1 of the target as walked.
    """
    rows = []
    for label in dict.fromkeys(r["variant"] for r in runs):
        group = [r for r in runs if r["variant"] == label]
        accuracy = [100 * r["accuracy"] for r in group]
        walked = [e for r in group for e in r["epochs"] if e.get("graph_version", 0) > 0 or
                  (r["config"]["sampler"] == "uniform" and e["epoch"] > 0)]
        hardness = [e["mean_similarity"] for e in walked if e.get("mean_similarity") is not None]
        relative = [e["relative_hardness"] for e in walked if e.get("relative_hardness") is not None]
        encoded = [e["encoded_relative_hardness"] for e in walked if e.get("encoded_relative_hardness") is not None]
        planned = [e["planned_hardness"] for e in walked if e.get("planned_hardness") is not None]
        same = [e["same_label_share"] for e in walked if e.get("same_label_share") is not None]
        target = group[0]["config"].get("target_hardness")
        on_target = walked_on_target = None
        if target is not None and relative:
            on_target = float(np.mean(np.abs(np.asarray(relative) - target) <= 0.1))
        if target is not None and planned:
            walked_on_target = float(np.mean(np.abs(np.asarray(planned) - target) <= 0.1))
        rows.append({
            "variant": label, "runs": len(group), "accuracy": float(np.mean(accuracy)),
            "epochs_on_target": on_target, "walked_on_target": walked_on_target,
            "accuracy_std": float(np.std(accuracy)),
            "per_seed": {int(r["config"].get("seed", 0)): 100 * r["accuracy"] for r in group},
            "hardness": float(np.mean(hardness)) if hardness else None,
            "relative_hardness": float(np.mean(relative)) if relative else None,
            "planned_hardness": float(np.mean(planned)) if planned else None,
            "encoded_relative_hardness": float(np.mean(encoded)) if encoded else None,
            "same_label_share": float(np.mean(same)) if same else None,
            "train_seconds": float(np.mean([r["train_seconds"] for r in group])),
        })
    _pair_with_uniform(rows, runs)
    return rows


def _pair_with_uniform(rows: list[dict], runs: list[dict]) -> None:
    """Add each row's accuracy difference to the uniform run of the same seed and batch size
    (``paired_difference``: mean and ``paired_std`` over the seeds both have; ``None`` without one)."""
    uniform: dict[tuple[int, int], float] = {}
    for r in runs:
        if r["config"]["sampler"] == "uniform" and not r["config"].get("replacement", False):
            uniform[(int(r["config"].get("batch_size", 0)), int(r["config"].get("seed", 0)))] = 100 * r["accuracy"]
    sizes = {r["variant"]: int(r["config"].get("batch_size", 0)) for r in runs}
    for row in rows:
        differences = [
            value - uniform[(sizes[row["variant"]], seed)] for seed, value in row["per_seed"].items()
            if (sizes[row["variant"]], seed) in uniform
        ]
        row["paired_difference"] = float(np.mean(differences)) if differences else None
        row["paired_std"] = float(np.std(differences, ddof=1)) if len(differences) > 1 else None
        row["paired_seeds"] = len(differences)


def markdown_table(rows: list[dict]) -> str:
    """The summary as a Markdown table."""
    def number(value, digits=3):
        return "—" if value is None else f"{value:.{digits}f}"

    lines = [
        "| variant | runs | accuracy % | per seed | paired difference to uniform | in-batch cosine | "
        "relative hardness (bank) | as walked | epochs within 0.1 of the target | relative hardness (eval encoding) | "
        "same-label share | train s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        paired = "—"
        if row.get("paired_difference") is not None:
            paired = f"{row['paired_difference']:+.2f}" + (
                f" ± {row['paired_std']:.2f}" if row.get("paired_std") is not None else "")
        seeds = " / ".join(f"{value:.1f}" for _, value in sorted(row.get("per_seed", {}).items()))
        lines.append(
            f"| {row['variant']} | {row['runs']} | {row['accuracy']:.2f} ± {row['accuracy_std']:.2f} | {seeds} | "
            f"{paired} | {number(row['hardness'])} | {number(row.get('relative_hardness'))} | "
            f"{number(row.get('planned_hardness'))} | {_on_target(row, number)} | {number(row.get('encoded_relative_hardness'))} | "
            f"{number(row['same_label_share'])} | {row['train_seconds']:.1f} |"
        )
    return "\n".join(lines)


def _on_target(row: dict, number) -> str:
    cell = number(row.get("epochs_on_target"), 2)
    walked = row.get("walked_on_target")
    return cell if walked is None else f"{cell} (as walked {walked:.2f})"


def plot(rows: list[dict], path: Path, title: str) -> None:
    """Accuracy against hardness and against same-label share, one point per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    for axis, key, name in zip(axes, ("hardness", "same_label_share"), ("mean in-batch cosine (bank)", "same-label pair share")):
        for row in rows:
            if row[key] is None:
                continue
            axis.errorbar(row[key], row["accuracy"], yerr=row["accuracy_std"], fmt="o", capsize=2,
                          color="tab:gray" if row["variant"].startswith("uniform") else "tab:blue")
            axis.annotate(row["variant"], (row[key], row["accuracy"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
        axis.set_xlabel(name)
    axes[0].set_ylabel("10-fold SVM accuracy (%)")
    figure.suptitle(title)
    figure.tight_layout()
    save_png(figure, path, dpi=120)
    plt.close(figure)


def merge_runs(documents: Sequence[dict]) -> list[dict]:
    """The runs of several sweep documents, in first-seen order of ``(variant, seed)``; a later
    document's run replaces an earlier one of the same variant and seed (e.g. a rerun of some
    variants with a newer sampler beside the uniform runs of an older sweep)."""
    merged: dict[tuple[str, int], dict] = {}
    for document in documents:
        for run in document["runs"]:
            merged[(run["variant"], int(run["config"].get("seed", 0)))] = run
    return list(merged.values())


def _summarise_files(parser: argparse.ArgumentParser, args: argparse.Namespace, argv: list[str]) -> int:
    documents, sources = [], []
    for path in args.from_runs:
        path = path / "sweep_runs.json" if path.is_dir() else path
        if not path.is_file():
            parser.error(f"--from-runs: {path} is not a sweep_runs.json file")
        document = json.loads(path.read_text())
        if document.get("partial") or "runs" not in document:
            parser.error(f"--from-runs: {path} holds an unfinished sweep")
        documents.append(document)
        sources.append(str(path))
    datasets = {document.get("dataset") for document in documents}
    if len(datasets) > 1:
        parser.error(f"--from-runs: the files are sweeps of different datasets {sorted(map(str, datasets))}")
    runs = merge_runs(documents)
    dataset = datasets.pop()
    args.output_dir.mkdir(parents=True, exist_ok=True)
    _write_results(args.output_dir, {"argv": argv, "dataset": dataset, "sources": sources}, runs,
                   f"GraphCL on {dataset}: one setting moved at a time")
    print(f"\n{len(runs)} runs from {len(sources)} files; results in {args.output_dir}")
    return 0


def _write_results(output_dir: Path, header: dict, runs: list[dict], title: str) -> None:
    """``sweep_runs.json`` (``header``, the summary and the runs), ``sweep_table.md`` and ``sweep.png``."""
    rows = summarize(runs)
    write_text(output_dir / "sweep_runs.json", json.dumps({**header, "summary": rows, "runs": runs}, indent=1))
    table = markdown_table(rows)
    write_text(output_dir / "sweep_table.md", table + "\n")
    plot(rows, output_dir / "sweep.png", title)
    print(table)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sweep_graphcl", description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path("../shared/data/tu"), help="TU root (default: %(default)s)")
    parser.add_argument("--dataset", default="MUTAG")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0 .. n-1 (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--loss", default="ntxent")
    parser.add_argument("--batch-size", type=int, default=128, help="batch size of the defaults (default: %(default)s)")
    parser.add_argument("--bank", choices=BANK_SPACES, default="projection",
                        help="embeddings fed back to the sampler in every variant (default: %(default)s)")
    parser.add_argument("--only", nargs="+", default=None, help="run only the variants with these labels")
    parser.add_argument("--factors", action="store_true",
                        help="the factors of issue 15 (epochs, bank, k against B, target_hardness) instead of the "
                             "one-setting sweep; pair it with --batch-size")
    parser.add_argument("--first-seed", type=int, default=0, help="seeds first .. first + n - 1 (default: %(default)s)")
    parser.add_argument("--drift-epochs", type=int, default=0, metavar="N",
                        help="the target variants aim above their target by the mean gap between the last N epochs "
                             "as walked and as measured after them; their labels gain ', drift=N' (default: 0, off)")
    parser.add_argument("--max-candidate-walks", type=int, default=None, metavar="N",
                        help=f"the target variants: {MAX_CANDIDATE_WALKS_HELP}; their labels gain ', max_walks=N'")
    parser.add_argument("--output-dir", type=Path, default=Path("results/graphcl_sweep"))
    parser.add_argument("--quick", action="store_true", help="defaults and uniform, 1 seed, 2 epochs")
    parser.add_argument("--from-runs", nargs="+", type=Path, default=None, metavar="RUNS_JSON",
                        help="train nothing: summarise these sweep_runs.json files (or their directories) into one "
                             "table; a later file's run replaces an earlier run of the same variant and seed")
    add_progress_flag(parser)
    args = parser.parse_args(argv)
    argv = list(sys.argv[1:] if argv is None else argv)
    if args.from_runs:
        return _summarise_files(parser, args, argv)
    if args.seeds < 1 or args.epochs < 1 or args.drift_epochs < 0:
        raise ValueError(f"--seeds and --epochs must be >= 1 and --drift-epochs >= 0, got {args.seeds}, "
                         f"{args.epochs} and {args.drift_epochs}")
    if args.max_candidate_walks is not None and args.max_candidate_walks < 1:
        raise ValueError(f"--max-candidate-walks must be >= 1, got {args.max_candidate_walks}")
    require_extra("graph")
    from .data import load_tu_dataset

    dataset = load_tu_dataset(args.dataset, args.root)
    chosen = (factor_variants if args.factors else variants)(len(dataset), args.batch_size)
    if args.quick:
        chosen, args.seeds, args.epochs = chosen[:2], 1, 2
    elif args.only:
        unknown = set(args.only) - {label for label, _ in chosen}
        if unknown:
            raise ValueError(f"--only: unknown variants {sorted(unknown)}; known: {[label for label, _ in chosen]}")
        chosen = [(label, overrides) for label, overrides in chosen if label in args.only]
    # Options of a target go to the target variants, and their labels say so.
    for name, short, value in (("drift_epochs", "drift", args.drift_epochs or None),
                               ("max_candidate_walks", "max_walks", args.max_candidate_walks)):
        if value is not None:
            chosen = [(f"{label}, {short}={value}", {**overrides, name: value})
                      if "target_hardness" in overrides else (label, overrides) for label, overrides in chosen]
    args.output_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    runs = run_sweep(
        dataset, chosen, range(args.first_seed, args.first_seed + args.seeds), checkpoint=args.output_dir / "sweep_runs.json",
        epochs=args.epochs, loss=args.loss, batch_size=args.batch_size, bank=args.bank, progress=progress_wanted(args.no_progress),
    )
    wall = time.perf_counter() - start
    header = {"argv": argv, "dataset": args.dataset, "bank": args.bank, "wall_seconds": wall}
    _write_results(args.output_dir, header, runs,
                   f"GraphCL on {args.dataset} ({args.loss}, {args.bank} bank): one setting moved at a time")
    print(f"\n{len(runs)} runs in {wall:.0f} s; results in {args.output_dir}")
    return 0
