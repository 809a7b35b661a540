"""``batchsampler demo``: a guided tour of the samplers on data that needs no download.

The data is scikit-learn's bundled digits (1797 images of 8x8 pixels, 10 classes). Part 1
builds each sampler on the centred pixel vectors (standing in for embeddings), samples one
epoch and reports hardness (mean in-batch cosine similarity), the false-negative proxy (share
of same-label pairs in a batch), coverage and time. Part 2 trains a small encoder with NT-Xent
on uniform batches and on BatchSampler batches (update every step, scheduled background
refresh), prints kNN accuracy, hardness, same-label share and sampler overhead, and writes
RUN.json and PNG plots to the output directory (atomically: each file is complete or absent).

Part 1's build and epoch times exclude the one-off loading (or, on a first run, compilation)
of the numba kernels: a tiny build and walk of every sampler runs first, untimed in the table
and reported on its own line. Progress bars are drawn only when stderr is a terminal
(``--no-progress``: never).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np

from .. import SAMPLERS
from ..diagnostics import merge_runs, summarize_epoch, write_runs
from ._progress import add_progress_flag, progress_wanted

_TOUR_SAMPLERS = ("uniform", "batchsampler")


def add_parser(commands: Any) -> None:
    demo = commands.add_parser(
        "demo",
        help="guided tour: the samplers' batches, then a short training run with plots (no download)",
        description=__doc__.split("\n\n")[1].replace("\n", " "),
    )
    demo.add_argument("--batch-size", type=int, default=64, help="(default: %(default)s)")
    demo.add_argument("--k", type=int, default=100, help="graph out-degree (default: %(default)s)")
    demo.add_argument("--m", type=int, default=1000, help="random candidates per node (default: %(default)s)")
    demo.add_argument("--restart-prob", type=float, default=0.2, help="alpha (default: %(default)s)")
    demo.add_argument("--seed", type=int, default=0, help="first seed (default: %(default)s)")
    tour = demo.add_argument_group("part 2, training")
    tour.add_argument("--epochs", type=int, default=40, help="epochs per training run (default: %(default)s)")
    tour.add_argument("--seeds", type=int, default=5,
                      help="training runs per sampler, seeds SEED, SEED+1, ... (default: %(default)s)")
    tour.add_argument("--refresh-every", type=int, default=25, help="batches between graph rebuilds (default: %(default)s)")
    tour.add_argument("--samplers", nargs="+", choices=sorted(SAMPLERS), default=list(_TOUR_SAMPLERS),
                      help="samplers to train with (default: %(default)s)")
    tour.add_argument("--output-dir", type=Path, default=Path("batchsampler-demo"),
                      help="where RUN.json and the plots go (default: ./%(default)s)")
    tour.add_argument("--quick", action="store_true", help="1 seed x 3 epochs: the whole tour in seconds")
    tour.add_argument("--static-only", action="store_true", help="part 1 only (no training, no files)")
    add_progress_flag(demo)
    demo.set_defaults(handler=run)


def load_digits_embeddings() -> tuple[np.ndarray, np.ndarray]:
    """Centred pixel vectors ``[1797, 64]`` float32 and labels ``[1797]`` of the digits data."""
    from sklearn.datasets import load_digits

    pixels, labels = load_digits(return_X_y=True)
    pixels = pixels.astype(np.float32)
    return pixels - pixels.mean(axis=0), labels


def warm_kernels(embeddings: np.ndarray, **options: Any) -> float:
    """Build and walk every sampler once on 50 rows, so that later timings exclude loading (or,
    on a first run, JIT-compiling) the numba kernels. Returns the seconds it took."""
    start = time.perf_counter()
    small = embeddings[:50]
    settings = options | {"batch_size": 8, "k": 5, "m": 20}
    for sampler_class in SAMPLERS.values():
        list(sampler_class(len(small), embeddings=small, **settings))
    return time.perf_counter() - start


def compare_samplers(
    embeddings: np.ndarray, labels: np.ndarray, **options: Any
) -> dict[str, dict[str, Any]]:
    """One epoch of each sampler in :data:`batchsampler.SAMPLERS`; statistics by sampler name."""
    rows = {}
    for name, sampler_class in SAMPLERS.items():
        start = time.perf_counter()
        sampler = sampler_class(len(embeddings), embeddings=embeddings, **options)
        built = time.perf_counter()
        batches = list(sampler)
        sampled = time.perf_counter()
        summary = summarize_epoch(batches, len(embeddings), embeddings=embeddings, labels=labels)
        rows[name] = dict(summary.as_dict(), build_seconds=built - start, epoch_seconds=sampled - built)
    return rows


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    if args.quick:
        args.epochs, args.seeds = 3, 1
    for name in ("epochs", "seeds", "refresh_every"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    options = {
        "batch_size": args.batch_size, "k": args.k, "m": args.m, "restart_prob": args.restart_prob, "seed": args.seed,
    }
    static = _static_part(options)
    if args.static_only:
        return 0
    _training_part(args, static)
    print(f"\ntour finished in {time.perf_counter() - started:.0f} s")
    return 0


def _static_part(options: dict[str, Any]) -> dict[str, dict[str, Any]]:
    embeddings, labels = load_digits_embeddings()
    print(
        f"digits: {len(embeddings)} instances x {embeddings.shape[1]} dims, {len(np.unique(labels))} classes; "
        + ", ".join(f"{key}={value}" for key, value in options.items())
    )
    warm = warm_kernels(embeddings, **options)
    print(f"compiled kernels loaded in {warm:.2f} s (once per process; a first run on a machine compiles them)")
    print("\n1/2  One epoch of batches from each sampler, centred pixels as embeddings\n")
    rows = compare_samplers(embeddings, labels, **options)
    header = f"{'sampler':<14}{'batches':>8}{'in-batch cos':>14}{'same-label':>12}{'coverage':>10}{'build s':>9}{'epoch s':>9}"
    print(header)
    print("-" * len(header))
    for name, row in rows.items():
        print(
            f"{name:<14}{row['num_batches']:>8}{row['mean_similarity']:>14.3f}{row['same_label_share']:>12.3f}"
            f"{row['coverage']:>10.3f}{row['build_seconds']:>9.3f}{row['epoch_seconds']:>9.3f}"
        )
    ours, uniform, knn = rows["batchsampler"], rows["uniform"], rows["knn"]
    print(
        f"\nBatchSampler vs uniform: in-batch cosine {ours['mean_similarity']:.3f} vs {uniform['mean_similarity']:.3f}"
        f" (higher = harder negatives).\nBatchSampler vs kNN: same-label share {ours['same_label_share']:.3f} vs "
        f"{knn['same_label_share']:.3f} (lower = fewer false negatives)."
    )
    return rows


def _training_part(args: argparse.Namespace, static: dict[str, dict[str, Any]]) -> None:
    import torch

    from ..diagnostics.plots import plot_runs
    from . import _tour

    settings = _tour.TourSettings(
        epochs=args.epochs, batch_size=args.batch_size, k=args.k, m=args.m, restart_prob=args.restart_prob,
        refresh_every=args.refresh_every, seed=args.seed,
    )
    pixels, labels = _tour.load_digits_pixels()
    steps = -(-len(pixels) // args.batch_size)
    print(
        f"\n2/2  Training an MLP encoder (64-128-64, projection 32) with NT-Xent (temperature "
        f"{settings.temperature}), {args.seeds} seed(s) x {args.epochs} epochs x {steps} steps per sampler;\n"
        f"     1 torch thread; sampler.update every step; graph samplers: 1 uniform warm-up epoch, then a "
        f"background rebuild every {args.refresh_every} batches (swapped in {settings.swap_delay} batches later)\n",
        flush=True,  # before the progress bars, which go to stderr
    )
    previous_threads = torch.get_num_threads()
    # A 64x128 MLP on 64-row batches gains nothing from intra-op threads, and on a busy machine
    # spinning OpenMP workers stalled single steps by seconds: one thread keeps timings honest.
    torch.set_num_threads(1)
    try:
        torch.manual_seed(args.seed)  # the initial weights of the first run
        with torch.no_grad():
            untrained = _tour.knn_accuracy(_tour.Encoder().backbone(pixels), labels)
        raw = _tour.knn_accuracy(pixels, labels)
        monitors, wall = {}, {}
        for name in args.samplers:
            for seed in range(args.seed, args.seed + args.seeds):
                run_name = f"{name}@seed{seed}"
                monitors[run_name], wall[run_name] = _tour.train(
                    name, pixels, labels, dataclasses.replace(settings, seed=seed), run_name=run_name,
                    progress=progress_wanted(args.no_progress),
                )
    finally:
        torch.set_num_threads(previous_threads)

    summaries = {name: [_tour.summarize_run(monitors[f"{name}@seed{s}"]) for s in range(args.seed, args.seed + args.seeds)]
                 for name in args.samplers}
    _print_training_table(summaries, raw, untrained, args)
    meta = {
        "demo": {"settings": dataclasses.asdict(settings) | {"seeds": list(range(args.seed, args.seed + args.seeds))},
                 "knn_accuracy_raw_pixels": raw, "knn_accuracy_untrained": untrained,
                 "train_seconds": wall, "static_comparison": static},
    }
    document = merge_runs(*(monitor.to_dict(meta) for monitor in monitors.values()))
    args.output_dir.mkdir(parents=True, exist_ok=True)
    write_runs(args.output_dir / "RUN.json", document)
    written = [args.output_dir / "RUN.json", *plot_runs(document, args.output_dir)]
    print("\nwrote " + ", ".join(str(path) for path in written))
    print(f"(plot again, or merge with other runs: batchsampler report {args.output_dir / 'RUN.json'})")


def _print_training_table(summaries: dict[str, list[dict[str, Any]]], raw: float, untrained: float, args) -> None:
    header = (f"{'sampler':<14}{'runs':>5}{'kNN accuracy':>16}{'in-batch cos':>14}{'same-label':>12}"
              f"{'sampler s':>11}{'% of step':>11}")
    print("\n" + header)
    print("-" * len(header))
    means = {}
    for name, runs in summaries.items():
        accuracy = np.array([r["knn_accuracy"] for r in runs])
        mean = {key: float(np.mean([r[key] for r in runs])) for key in runs[0]}
        means[name] = mean | {"knn_std": float(accuracy.std())}
        spread = f"{accuracy.mean():.3f} ± {accuracy.std():.3f}" if len(runs) > 1 else f"{accuracy.mean():.3f}"
        print(
            f"{name:<14}{len(runs):>5}{spread:>16}{mean['hardness']:>14.3f}"
            f"{mean['same_label_share']:>12.3f}{mean['sampler_seconds']:>11.2f}{100 * mean['sampler_share']:>11.1f}"
        )
    step_ms = 1000 * np.mean([r["step_seconds"] / r["steps"] for runs in summaries.values() for r in runs])
    last = args.epochs - 1
    print(
        f"\nkNN accuracy: leave-one-out, 10 neighbours, frozen backbone features after the last epoch "
        f"({'mean ± std over runs' if args.seeds > 1 else 'one run'});\n  for reference, raw pixels score {raw:.3f} and the untrained encoder "
        f"(seed {args.seed}) {untrained:.3f}.\n"
        f"in-batch cos, same-label: means over epochs {min(1, last)}..{last} (epoch 0 is uniform for every sampler), "
        f"cosine in each model's projection space.\n"
        f"sampler s: seconds spent producing batches per run (walks and waits for graph builds); "
        f"% of step: their share of the training-step time (mean step {step_ms:.1f} ms)."
    )
    if "uniform" in means and "batchsampler" in means:
        ours, base = means["batchsampler"], means["uniform"]
        spread = f" (std over runs: {ours['knn_std']:.3f} and {base['knn_std']:.3f})" if args.seeds > 1 else " (one run each)"
        print(
            f"Measured, batchsampler minus uniform: in-batch cos {ours['hardness'] - base['hardness']:+.3f}, "
            f"same-label share {ours['same_label_share'] - base['same_label_share']:+.3f}, kNN accuracy "
            f"{ours['knn_accuracy'] - base['knn_accuracy']:+.3f}{spread}."
        )
