"""How M, K, alpha and the refresh interval move hardness and false negatives (the digits).

    python examples/sweep_parameters.py                   # about 7 minutes on 2 busy cores
    python examples/sweep_parameters.py --quick -o /tmp/sweep   # seconds, a smoke test

Writes ``parameter_sweep.md`` (tables), ``parameter_sweep.png`` and ``rule_of_thumb.png`` to
``--output-dir`` (default ``docs/``). Around the defaults B = 64, K = 100, M = 1000,
alpha = 0.2 one parameter moves at a time:

* M, K, alpha: the graph is built from fixed embeddings and one epoch is sampled, in two
  embedding spaces: the centred pixels (as in ``batchsampler demo``) and the projections of
  the demo's encoder after 20 epochs of uniform batches (classes better separated). Hardness is
  the mean in-batch cosine in that space; the false-negative proxy is the same-label share of
  in-batch pairs. The graph's same-label neighbours per node are set against the rule of thumb
  ``min(K, p M)``. Means over seeds.
* refresh interval: BatchSampler trains the demo's encoder for 20 epochs with a background
  rebuild every t batches (swapped in min(16, t) batches later); hardness is measured in the
  model's own projection space at the end of each epoch and averaged over epochs 1..19.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from batchsampler import BatchSampler, UniformBatchSampler
from batchsampler.cli import _tour
from batchsampler.cli.demo import load_digits_embeddings
from batchsampler._io import write_text
from batchsampler.diagnostics import summarize_epoch, summarize_graph
from batchsampler.diagnostics.plots import save_png

DEFAULTS = {"batch_size": 64, "k": 100, "m": 1000, "restart_prob": 0.2}
GRID = {
    "m": [100, 150, 200, 300, 500, 1000, 1796],
    "k": [5, 10, 20, 50, 100, 200],
    "restart_prob": [0.0, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0],
}
REFRESH = [3, 10, 29, 100, 300]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-o", "--output-dir", type=Path, default=Path(__file__).resolve().parents[1] / "docs")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per setting (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=20, help="training epochs for the refresh sweep and the trained space")
    parser.add_argument("--quick", action="store_true", help="1 seed, 2 values per parameter, 2 epochs")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.epochs = 1, 2
    return args


def spaces(epochs: int) -> dict[str, np.ndarray]:
    """The two fixed embedding spaces: centred pixels and a uniformly trained encoder's projections."""
    pixels, _ = load_digits_embeddings()
    data, labels = _tour.load_digits_pixels()
    monitor, _ = _tour.train("uniform", data, labels, _tour.TourSettings(epochs=epochs), progress=False)
    return {"pixels": pixels, "trained": monitor.embeddings_fn().numpy()}


def static_row(embeddings: np.ndarray, labels: np.ndarray, seeds: int, **options) -> dict[str, float]:
    """Means over seeds of one epoch's hardness and same-label share, and of the graph's label counts."""
    rows = []
    for seed in range(seeds):
        sampler = BatchSampler(len(embeddings), embeddings=embeddings, seed=seed, **options)
        epoch = summarize_epoch(list(sampler), len(embeddings), embeddings=embeddings, labels=labels)
        graph = summarize_graph(sampler.graph, labels)
        rows.append({
            "hardness": epoch.mean_similarity, "same_label_share": epoch.same_label_share,
            "same_label_neighbors": graph.same_label_neighbors, "rule": graph.expected_same_label_neighbors,
            "reseeds_per_batch": sampler.walk_stats.reseeds / len(sampler),
        })
    return {key: float(np.mean([row[key] for row in rows])) for key in rows[0]}


def uniform_row(embeddings: np.ndarray, labels: np.ndarray, seeds: int) -> dict[str, float]:
    summaries = [
        summarize_epoch(list(UniformBatchSampler(len(embeddings), DEFAULTS["batch_size"], seed=seed)), len(embeddings),
                        embeddings=embeddings, labels=labels)
        for seed in range(seeds)
    ]
    return {"hardness": float(np.mean([s.mean_similarity for s in summaries])),
            "same_label_share": float(np.mean([s.same_label_share for s in summaries]))}


def refresh_rows(values: list[int], seeds: int, epochs: int) -> dict[int, dict[str, float]]:
    data, labels = _tour.load_digits_pixels()
    rows = {}
    for every in values:
        runs = []
        for seed in range(seeds):
            # A build can only be requested after the previous one swapped in, so the swap
            # delay must not exceed the interval being measured.
            settings = _tour.TourSettings(epochs=epochs, refresh_every=every, swap_delay=min(16, every), seed=seed, **DEFAULTS)
            monitor, _ = _tour.train("batchsampler", data, labels, settings, progress=False)
            summary = _tour.summarize_run(monitor)
            summary["builds"] = sum(r["timing"]["builds"] for r in monitor.records)
            runs.append(summary)
        rows[every] = {key: float(np.mean([run[key] for run in runs])) for key in runs[0]}
        print(f"refresh every {every:>4}: {rows[every]}", flush=True)
    return rows


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    started = time.perf_counter()
    torch.set_num_threads(1)  # as in the demo: tiny model, shared machine
    grid = {name: values[:: max(1, len(values) // 2)][:2] for name, values in GRID.items()} if args.quick else GRID
    refresh = REFRESH[1:3] if args.quick else REFRESH
    _, labels = load_digits_embeddings()
    embedding_spaces = spaces(args.epochs)
    static = {space: {name: {} for name in grid} for space in embedding_spaces}
    uniform = {}
    for space, embeddings in embedding_spaces.items():
        uniform[space] = uniform_row(embeddings, labels, args.seeds)
        for name, values in grid.items():
            for value in values:
                static[space][name][value] = static_row(embeddings, labels, args.seeds, **(DEFAULTS | {name: value}))
            print(f"{space}: {name} done", flush=True)
    load_before = os.getloadavg()[0]
    refreshed = refresh_rows(refresh, args.seeds, args.epochs)
    args.load = (load_before, os.getloadavg()[0])  # timings depend on what else the machine runs
    args.output_dir.mkdir(parents=True, exist_ok=True)
    command = "python examples/sweep_parameters.py" + (" --quick" if args.quick else "")
    write_markdown(args.output_dir / "parameter_sweep.md", static, uniform, refreshed, args, command)
    plot(args.output_dir, static, uniform, refreshed)
    print(f"wrote {args.output_dir}/parameter_sweep.md, parameter_sweep.png, rule_of_thumb.png "
          f"in {time.perf_counter() - started:.0f} s")
    return {"static": static, "uniform": uniform, "refresh": refreshed}


def write_markdown(path: Path, static, uniform, refreshed, args, command: str) -> None:
    lines = [
        "# Parameter sweep on the digits",
        "",
        f"Produced by `{command}` ({args.seeds} seed(s) per setting; defaults "
        + ", ".join(f"{k}={v}" for k, v in DEFAULTS.items()) + "). One parameter moves at a time.",
        "hardness: mean in-batch cosine similarity; same-label: share of in-batch pairs with one label "
        "(false-negative proxy); nbrs same label: the graph's out-neighbours per node that share the "
        "node's label; rule: min(K, p M) averaged over nodes (p: share of the other instances in the "
        "node's class, about 0.1 here).",
        "",
    ]
    for space in static:
        lines.append(f"## {space} space (uniform batches: hardness {uniform[space]['hardness']:.3f}, "
                     f"same-label {uniform[space]['same_label_share']:.3f})")
        for name, rows in static[space].items():
            lines += ["", f"| {name} | hardness | same-label | nbrs same label | rule min(K, pM) | reseeds / batch |",
                      "|---|---|---|---|---|---|"]
            for value, row in rows.items():
                lines.append(f"| {value} | {row['hardness']:.3f} | {row['same_label_share']:.3f} | "
                             f"{row['same_label_neighbors']:.1f} | {row['rule']:.1f} | {row['reseeds_per_batch']:.2f} |")
        lines.append("")
    lines += [f"## Refresh interval (training, {args.epochs} epochs, means over epochs 1..{args.epochs - 1})", "",
              "| refresh every (batches) | graph builds | hardness | same-label | kNN accuracy | sampler % of step "
              "| mean step ms |",
              "|---|---|---|---|---|---|---|"]
    for every, row in refreshed.items():
        lines.append(f"| {every} | {row['builds']:.0f} | {row['hardness']:.3f} | {row['same_label_share']:.3f} | "
                     f"{row['knn_accuracy']:.3f} | {100 * row['sampler_share']:.1f} | "
                     f"{1000 * row['step_seconds'] / row['steps']:.1f} |")
    lines += ["", "Background builds run in a thread beside the training step: their cost shows up as slower "
              "steps (mean step ms), while sampler % of step counts only the walks and waits for late builds. "
              f"Timings are those of this machine ({os.cpu_count()} cores, 1-minute load average "
              f"{args.load[0]:.1f} before and {args.load[1]:.1f} after the refresh runs); hardness, same-label "
              "share and accuracy do not depend on them (the runs are deterministic)."]
    write_text(path, "\n".join(lines) + "\n")  # atomic: the old file or the new one


def plot(output: Path, static, uniform, refreshed) -> None:
    from matplotlib.figure import Figure

    titles = {"m": "M (candidates per node)", "k": "K (out-degree)", "restart_prob": "alpha (restart probability)"}
    figure = Figure(figsize=(14, 7.2), layout="constrained")
    axes = [figure.add_subplot(2, 4, i + 1) for i in range(8)]
    for column, name in enumerate(titles):
        for row, (metric, label) in enumerate((("hardness", "in-batch cosine"), ("same_label_share", "same-label share"))):
            axis = axes[row * 4 + column]
            for number, space in enumerate(static):
                values = list(static[space][name])
                axis.plot(values, [static[space][name][v][metric] for v in values], "o-", color=f"C{number}", label=space)
                axis.axhline(uniform[space][metric], color=f"C{number}", linestyle=":", linewidth=1,
                             label=f"{space}, uniform")
            axis.set_xscale("log" if name != "restart_prob" else "linear")
            axis.set(xlabel=titles[name], ylabel=label)
            axis.grid(alpha=0.3)
    panels = (("hardness", "in-batch cosine (model space)"), ("same_label_share", "same-label share"))
    for row, (metric, label) in enumerate(panels):
        axis = axes[row * 4 + 3]
        values = list(refreshed)
        axis.plot(values, [refreshed[v][metric] for v in values], "o-", color="C2", label="training")
        axis.set_xscale("log")
        axis.set(xlabel="refresh every t batches", ylabel=label)
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    axes[3].legend(fontsize=7)
    figure.suptitle("BatchSampler on the digits: hardness (top) and false-negative proxy (bottom), one parameter at a time")
    save_png(figure, output / "parameter_sweep.png", dpi=100)

    figure = Figure(figsize=(10, 3.8), layout="constrained")
    for column, name in enumerate(("m", "k")):
        axis = figure.add_subplot(1, 2, column + 1)
        for number, space in enumerate(static):
            values = list(static[space][name])
            axis.plot(values, [static[space][name][v]["same_label_neighbors"] for v in values], "o-", color=f"C{number}",
                      label=f"measured, {space}")
        values = list(static["pixels"][name])
        axis.plot(values, [static["pixels"][name][v]["rule"] for v in values], "k--", label="rule: min(K, p M)")
        axis.set_xscale("log")
        axis.set(xlabel=titles[name], ylabel="same-label out-neighbours per node")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.suptitle("Rule of thumb vs the graph's neighbour labels (K = 100 left, M = 1000 right)")
    save_png(figure, output / "rule_of_thumb.png", dpi=100)


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
