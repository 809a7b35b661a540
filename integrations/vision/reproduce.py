"""SimCLR with uniform, kNN and BatchSampler batches at CPU scale: samplers x losses x seeds.

Every run trains for the same number of epochs, hence the same number of optimisation steps
whatever the sampler (all samplers yield ``ceil(N / B)`` batches per epoch), on the same image
subset. Writes ``simclr_runs.json`` (every run, rewritten after each one), ``simclr_table.md``
(mean ± std over seeds of the weighted-kNN and linear-probe test accuracy) and
``simclr_knn_curves.png`` (kNN accuracy per epoch, mean ± std band per sampler) to
``--output-dir``.

    python examples/reproduce_simclr.py --root ../shared/data/fashion-mnist --threads 1
    batchsampler reproduce vision --quick          # the CI smoke run
    batchsampler reproduce vision --dataset folder --root cifar10/ --train-split train --test-split test
    batchsampler reproduce vision --bank backbone --samplers uniform batchsampler

``--bank`` chooses the space of the embeddings fed back to the sampler (projection-head
outputs, the encoder's features before the head, or both); ``--target-hardness`` is passed to
the BatchSampler runs only and ``--replacement`` to every sampler. All three are recorded in
each run's config, and the table and curves keep arms with different settings apart.
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
import torch
from tqdm.auto import tqdm

from ..._io import write_text
from ...cli._progress import add_progress_flag, progress_wanted
from ...diagnostics.plots import save_png
from .. import require_extra
from .._arms import add_run_flags, arm_label, check_target_flag, target_settings
from .data import ImageData, load_fashion_mnist, load_image_folder
from .train import TARGET_WARMUP_EPOCHS, SimCLRConfig, train_simclr

__all__ = ["learning_curves", "load_splits", "main", "markdown_table", "run_grid"]

logger = logging.getLogger(__name__)


def load_splits(dataset: str, root: Path, train_split: str = "train", test_split: str = "test",
                image_size: int | None = None) -> tuple[ImageData, ImageData]:
    """Train and test :class:`ImageData` of ``dataset`` (``"fashion-mnist"`` or ``"folder"``).

    Raises:
        ValueError: on another ``dataset``, or folder splits with different classes.
    """
    if dataset == "fashion-mnist":
        return load_fashion_mnist(root, "train"), load_fashion_mnist(root, "test")
    if dataset == "folder":
        train = load_image_folder(root, train_split, size=image_size)
        test = load_image_folder(root, test_split, size=image_size, channels=train.images.shape[1])
        if train.classes != test.classes:
            raise ValueError(f"train and test splits of {root} must hold the same classes")
        return train, test
    raise ValueError(f"dataset must be 'fashion-mnist' or 'folder', got {dataset!r}")


def run_grid(
    train: ImageData,
    test: ImageData,
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
    """Train and evaluate every (sampler, loss, seed); returns one record per run.

    ``config_overrides`` are :class:`SimCLRConfig` fields shared by every run (e.g. ``bank``,
    ``replacement``); ``target_hardness`` and ``max_candidate_walks`` are set on the
    ``"batchsampler"`` runs only.

    ``progress``: draw bars over the runs and each run's epochs (the command line: only when
    stderr is a terminal).

    Seeds are the outer loop, so an interrupted grid has complete sampler comparisons for the
    seeds it finished. With ``checkpoint``, the runs so far are rewritten to that JSON file after
    every run.
    """
    runs = []
    grid = [(s, loss, seed) for seed in seeds for loss in losses for s in samplers]
    for sampler, loss, seed in tqdm(grid, desc="SimCLR runs", unit="run", disable=not progress):
        config = SimCLRConfig(sampler=sampler, loss=loss, seed=seed,
                           **target_settings(sampler, target_hardness, max_candidate_walks), **config_overrides)
        result = train_simclr(train, test, config, progress=progress)
        runs.append(result)
        if checkpoint is not None:
            write_text(checkpoint, json.dumps({"partial": True, "runs": runs}, indent=1))
        logger.info("%s %s seed %d: kNN %.2f%%, linear %s", sampler, loss, seed, 100 * result["knn_accuracy"],
                    "-" if result["linear_accuracy"] is None else f"{100 * result['linear_accuracy']:.2f}%")
    return runs


def _cell(values: list[float], scale: float = 100.0, digits: int = 2) -> str:
    if not values:
        return "—"
    values = [scale * v for v in values]
    return f"{np.mean(values):.{digits}f} ± {np.std(values):.{digits}f}"


def markdown_table(runs: list[dict]) -> str:
    """Mean ± std over seeds per loss and arm (the sampler with its bank space, target hardness
    and replacement when not the defaults, see :func:`~batchsampler.integrations._arms.arm_label`):
    final kNN and linear-probe test accuracy (%); after the warm-up epochs, the mean in-batch
    cosine similarity in the bank's space (hardness) and the same-label share of in-batch pairs
    (%, a false-negative proxy); training seconds per run."""
    rows = sorted({(r["config"]["loss"], arm_label(r["config"])) for r in runs})
    lines = [("| loss | sampler | seeds | kNN acc. (%) | linear probe (%) | hardness | same-label pairs (%) "
             "| train s / run |"), "|---|---|---|---|---|---|---|---|"]
    for loss, sampler in rows:
        group = [r for r in runs if r["config"]["loss"] == loss and arm_label(r["config"]) == sampler]
        linear = [r["linear_accuracy"] for r in group if r["linear_accuracy"] is not None]
        hardness = _after_warmup(group, "mean_similarity")
        same = _after_warmup(group, "same_label_share")
        lines.append(f"| {loss} | {sampler} | {len(group)} | {_cell([r['knn_accuracy'] for r in group])} | "
                     f"{_cell(linear)} | {_cell(hardness, 1, 3)} | {_cell(same, digits=1)} | "
                     f"{_cell([r['train_seconds'] for r in group], 1, 0)} |")
    return "\n".join(lines)


def _after_warmup(group: list[dict], key: str) -> list[float]:
    """Per run, the mean of epoch statistic ``key`` over the epochs after the uniform warm-up."""
    means = []
    for r in group:
        values = [e[key] for e in r["epochs"][r["config"]["warmup_epochs"]:] if e[key] is not None]
        if values:
            means.append(float(np.mean(values)))
    return means


def learning_curves(runs: list[dict], path: Path) -> None:
    """kNN test accuracy against epoch (0 = initial weights), one panel per loss, one line with a
    ± std band per arm (sampler and settings, as in :func:`markdown_table`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    losses = sorted({r["config"]["loss"] for r in runs})
    figure, axes = plt.subplots(1, len(losses), figsize=(5 * len(losses), 4), squeeze=False)
    for axis, loss in zip(axes[0], losses):
        for sampler in sorted({arm_label(r["config"]) for r in runs if r["config"]["loss"] == loss}):
            group = [r for r in runs if r["config"]["loss"] == loss and arm_label(r["config"]) == sampler]
            points: dict[int, list[float]] = {0: [100 * r["initial_knn_accuracy"] for r in group]}
            for r in group:
                for e in r["epochs"]:
                    if e["knn_accuracy"] is not None:
                        points.setdefault(e["epoch"] + 1, []).append(100 * e["knn_accuracy"])
            x = np.array(sorted(points))
            mean = np.array([np.mean(points[i]) for i in x])
            std = np.array([np.std(points[i]) for i in x])
            line, = axis.plot(x, mean, marker=".", label=f"{sampler} (n={len(group)})")
            axis.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.2)
        axis.set_xlabel("epoch")
        axis.set_ylabel("weighted kNN test accuracy (%)")
        axis.set_title(f"SimCLR, {loss}")
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    save_png(figure, path, dpi=120)
    plt.close(figure)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="batchsampler reproduce vision", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", choices=["fashion-mnist", "folder"], default="fashion-mnist")
    parser.add_argument("--root", type=Path, default=Path("../shared/data/fashion-mnist"),
                        help="idx-file directory, or image-folder root (default: %(default)s)")
    parser.add_argument("--train-split", default="train", help="folder datasets: training sub-directory")
    parser.add_argument("--test-split", default="test", help="folder datasets: test sub-directory")
    parser.add_argument("--image-size", type=int, default=None, help="folder datasets: resize to this square size")
    parser.add_argument("--train-size", type=int, default=5000, help="training images, random subset (0 or more than N: all)")
    parser.add_argument("--test-size", type=int, default=2000, help="test images, random subset (0: all)")
    parser.add_argument("--samplers", nargs="+", default=["uniform", "knn", "batchsampler"])
    parser.add_argument("--losses", nargs="+", default=["ntxent"])
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0 .. n-1 (default: %(default)s)")
    parser.add_argument("--first-seed", type=int, default=0,
                        help="seeds first .. first + n - 1, e.g. to add seeds to a grid (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--width", type=int, default=8, help="channels of the first ResNet stage")
    parser.add_argument("--blocks", type=int, nargs="+", default=[1, 1, 1, 1], help="basic blocks per stage")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--temperature", type=float, default=0.5)
    parser.add_argument("--k", type=int, default=None, help="graph out-degree (default: scaled to N)")
    parser.add_argument("--m", type=int, default=None, help="candidates per node (default: scaled to N)")
    parser.add_argument("--restart-prob", type=float, default=0.2)
    parser.add_argument("--refresh-every", type=int, default=None, help="batches between graph rebuilds (default: one epoch)")
    add_run_flags(parser, features='encoder features', target_warmup=TARGET_WARMUP_EPOCHS)
    parser.add_argument("--knn-every", type=int, default=1, help="epochs between kNN monitor evaluations")
    parser.add_argument("--no-linear-probe", action="store_true")
    parser.add_argument("--threads", type=int, default=None, help="torch and BLAS CPU threads (default: their choice)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    parser.add_argument("--output-dir", type=Path, default=Path("results/simclr"))
    parser.add_argument("--quick", action="store_true",
                        help="defaults for a smoke run: 512 train / 256 test images (at most), width 8, batch 128, 2 epochs, "
                             "1 seed, NT-Xent, 1 thread")
    add_progress_flag(parser)
    if parser.parse_args(argv).quick:
        # Defaults, not overrides: flags given explicitly still win.
        # One thread because small convolutions gain nothing from threads, and oversubscribed CI
        # cores lose a lot (measured 6x slower with 2 threads on a busy 2-core machine).
        parser.set_defaults(train_size=512, test_size=256, width=8, epochs=2, batch_size=128, seeds=1,
                            losses=["ntxent"], threads=1)
    args = parser.parse_args(argv)
    check_target_flag(parser, args)
    if args.first_seed < 0:
        parser.error(f"--first-seed must be >= 0, got {args.first_seed}")
    threads = torch.get_num_threads()
    if args.threads is None:
        return _run(args, argv)
    from threadpoolctl import threadpool_limits  # a scikit-learn dependency

    torch.set_num_threads(args.threads)
    try:
        # BLAS threads too: the linear probe's L-BFGS took a minute instead of half a second
        # with two BLAS threads on two busy cores.
        with threadpool_limits(args.threads):
            return _run(args, argv)
    finally:
        torch.set_num_threads(threads)  # callers (tests, notebooks) keep their setting


def _run(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    if args.dataset == "folder":
        require_extra("vision", "reading an image folder (--dataset folder)")
    args.output_dir.mkdir(parents=True, exist_ok=True)
    train, test = load_splits(args.dataset, args.root, args.train_split, args.test_split, args.image_size)
    # One fixed subset (seed 0) for every run: seeds vary the model and the views, not the data.
    sizes = [min(size, len(data)) if size else None for size, data in ((args.train_size, train), (args.test_size, test))]
    train, test = train.subset(sizes[0], seed=0), test.subset(sizes[1], seed=0)
    logger.info("train %s, test %s", tuple(train.images.shape), tuple(test.images.shape))
    start = time.perf_counter()
    runs = run_grid(
        train, test, args.samplers, args.losses, range(args.first_seed, args.first_seed + args.seeds),
        checkpoint=args.output_dir / "simclr_runs.json",
        epochs=args.epochs, batch_size=args.batch_size, width=args.width, blocks=tuple(args.blocks), lr=args.lr,
        temperature=args.temperature, k=args.k, m=args.m, restart_prob=args.restart_prob,
        refresh_every=args.refresh_every, knn_every=args.knn_every, linear_probe=not args.no_linear_probe,
        device=args.device, bank=args.bank, target_hardness=args.target_hardness, replacement=args.replacement,
        drift_epochs=args.drift_epochs, warmup_epochs=args.warmup_epochs, max_candidate_walks=args.max_candidate_walks,
        progress=progress_wanted(args.no_progress),
    )
    wall = time.perf_counter() - start
    record = {"argv": list(argv) if argv is not None else sys.argv[1:], "wall_seconds": wall,
              "train_shape": list(train.images.shape), "test_shape": list(test.images.shape),
              "torch_threads": torch.get_num_threads(), "runs": runs}
    write_text(args.output_dir / "simclr_runs.json", json.dumps(record, indent=1))
    table = markdown_table(runs)
    write_text(args.output_dir / "simclr_table.md", table + "\n")
    learning_curves(runs, args.output_dir / "simclr_knn_curves.png")
    print(table)
    print(f"\n{len(runs)} runs in {wall:.0f} s; results in {args.output_dir}")
    return 0
