"""Where an epoch's hardness goes while the model trains on it (encoded bank, a target).

``BatchSampler(target_hardness=...)`` walks an epoch on the bank it has at the epoch's start;
the integrations also measure the epoch at its end, on the bank the model encodes after
training on those batches. This script follows one epoch from the first measure to the second,
step by step, to show which part of the difference a sampler could act on.

For every seed it trains GraphCL on a TU dataset (``--modality graph``, as ``sweep_graphcl.py
--factors``) or SimCLR on Fashion-MNIST (``--modality vision``, as ``reproduce_simclr.py``), with
``bank="encoded"`` and the given target, and after every optimizer step (the training
function's ``on_step``) encodes the whole training set in eval mode, which does not change
training. Per walked epoch it records:

* **the trajectory**: the relative hardness of the epoch's batches on the bank at the epoch's
  start and after each of its steps (references measured afresh on each, as the integrations'
  ``relative_hardness``; the last point is that value);
* **other walks of the same graph**: the calibration's simulated epochs (the walks a candidate
  walk chooses among), measured on the start and end banks. Their mean change is the part of
  the shift common to every walk the sampler could have chosen; the spread around it is the
  part a choice among walks could act on, if it could see the end bank.

Writes ``drift.json`` (every epoch), ``drift.md`` (the summary) and ``drift.png`` to
``--output-dir``::

    python examples/hardness_drift.py --dataset MUTAG --seeds 5 --output-dir examples/hardness/drift_mutag
    python examples/hardness_drift.py --modality vision --seeds 5 --output-dir examples/hardness/drift_simclr
    python examples/hardness_drift.py --quick --output-dir /tmp/drift   # smoke run: 1 seed, 3 epochs
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from batchsampler.integrations._arms import MAX_CANDIDATE_WALKS_HELP, StepCallback
from tqdm import tqdm

from batchsampler._io import write_text
from batchsampler.diagnostics.plots import save_png
from batchsampler.hardness import HardnessScale, epoch_profile, mean_pair_similarity

logger = logging.getLogger("hardness_drift")

ON_TARGET = 0.1
"""The tolerance of issue 15's criterion: within 0.1 of the target."""


def _profile(bank: np.ndarray, batches: list[list[int]], batch_size: int) -> dict:
    # The integrations' measure (integrations._arms.epoch_hardness): references with rng 0.
    return epoch_profile(bank, batches, batch_size, np.random.default_rng(0))


def _other_walks(bank: np.ndarray, walks: list[list[int]], scale: HardnessScale, num_batches: int) -> list[float]:
    """Relative hardness on ``scale`` of each whole epoch in ``walks`` (runs of ``num_batches``)."""
    return [scale.relative(mean_pair_similarity(bank, walks[i : i + num_batches]))
            for i in range(0, len(walks) - num_batches + 1, num_batches)]


def follow_run(train: Callable[[StepCallback], dict], encode: Callable[[Any], np.ndarray], seed: int,
               batch_size: int) -> dict:
    """Train one run and follow each walked epoch through its steps (see the module).

    ``train(on_step)`` trains the run and returns its record (``train_graphcl`` or
    ``train_simclr``); ``encode(model)`` is the eval-mode encoding of the training set that the
    ``"encoded"`` bank receives at each epoch's end.
    """
    state: dict = {"banks": [], "batches": [], "walks": None, "start": None, "epochs": []}

    def close_epoch() -> None:
        if state["walks"] is None:
            return
        banks, batches = [state["start"], *state["banks"]], state["batches"]
        profiles = [_profile(bank, batches, batch_size) for bank in banks]
        start, end = (HardnessScale(**profiles[i]["scale"]) for i in (0, -1))  # references measured once per bank
        state["epochs"].append({
            "trajectory": [float(profile["relative_hardness"]) for profile in profiles],
            "other_walks_start": _other_walks(banks[0], state["walks"], start, len(batches)),
            "other_walks_end": _other_walks(banks[-1], state["walks"], end, len(batches)),
        })

    def on_step(epoch: int, step: int, indices: torch.Tensor, model, sampler) -> None:
        if step == 0:
            close_epoch()
            state["banks"], state["batches"], state["walks"] = [], [], None
            if sampler.graph is not None:
                # The bank the epoch was walked on (the encoded bank changes only at epoch ends),
                # and the calibration's simulated epochs on the same graph: the walks the
                # sampler's candidate walks choose among.
                state["start"] = sampler.bank.numpy().copy()
                rng = np.random.default_rng([seed, 1, epoch])
                state["walks"] = sampler._walk_epoch(sampler.graph, sampler._reseed_vectors(),
                                                     sampler.current_restart_prob, rng)
        state["batches"].append(indices.tolist())
        state["banks"].append(np.asarray(encode(model), dtype=np.float32))

    result = train(on_step)
    close_epoch()
    walked = [record for record in result["epochs"] if record["planned_hardness"] is not None]
    if len(walked) != len(state["epochs"]):
        raise RuntimeError(f"followed {len(state['epochs'])} epochs, the run walked {len(walked)}")
    for record, followed in zip(walked, state["epochs"]):
        if not np.isclose(followed["trajectory"][-1], record["relative_hardness"], atol=1e-5):
            raise RuntimeError(f"epoch {record['epoch']}: the followed end value differs from the run's")
        followed |= {"epoch": record["epoch"], "planned_hardness": record["planned_hardness"],
                     "relative_hardness": record["relative_hardness"]}
    accuracy = result["accuracy"] if "accuracy" in result else result["knn_accuracy"]
    return {"seed": seed, "accuracy": accuracy, "epochs": state["epochs"]}


def graph_runs(args: argparse.Namespace) -> Iterator[tuple[Callable, Callable, int]]:
    """``(train, encode, seed)`` of GraphCL on a TU dataset, as ``sweep_graphcl.py --factors``."""
    from batchsampler.integrations.graph.data import load_tu_dataset
    from batchsampler.integrations.graph.train import (
        GraphCLConfig,
        embed_graphs,
        train_graphcl,
    )

    dataset = load_tu_dataset(args.dataset, args.root)
    graphs = [dataset[i] for i in range(len(dataset))]
    for seed in range(args.seeds):
        config = GraphCLConfig(seed=seed, sampler="batchsampler", epochs=args.epochs, batch_size=args.batch_size,
                               bank="encoded", target_hardness=args.target_hardness,
                               max_candidate_walks=args.max_candidate_walks, **_warmup(args))
        yield (lambda on_step, config=config: train_graphcl(dataset, config, on_step=on_step),
               lambda model: embed_graphs(model, graphs), seed)


def _warmup(args: argparse.Namespace) -> dict[str, int]:
    """``--warmup-epochs`` as a config field; none (the config's default) when it is not given."""
    return {} if args.warmup_epochs is None else {"warmup_epochs": args.warmup_epochs}


def vision_runs(args: argparse.Namespace) -> Iterator[tuple[Callable, Callable, int]]:
    """``(train, encode, seed)`` of SimCLR on Fashion-MNIST, as ``reproduce_simclr.py`` (the
    training subset of seed 0; no linear probe, which runs after training)."""
    from batchsampler.integrations.vision.evaluate import embed_images
    from batchsampler.integrations.vision.reproduce import load_splits
    from batchsampler.integrations.vision.train import SimCLRConfig, train_simclr

    train, test = load_splits("fashion-mnist", args.root)
    train, test = train.subset(min(args.train_size, len(train)), seed=0), test.subset(min(args.test_size, len(test)), seed=0)
    for seed in range(args.seeds):
        config = SimCLRConfig(seed=seed, sampler="batchsampler", epochs=args.epochs, batch_size=args.batch_size,
                              temperature=args.temperature, bank="encoded", target_hardness=args.target_hardness,
                              linear_probe=False, device="cpu", max_candidate_walks=args.max_candidate_walks,
                              **_warmup(args))
        yield (lambda on_step, config=config: train_simclr(train, test, config, on_step=on_step),
               lambda model: embed_images(model, train.images, device="cpu").numpy(), seed)


def summarize(runs: list[dict], target: float) -> dict:
    """Pooled figures over every walked epoch of ``runs``."""
    epochs = [epoch for run in runs for epoch in run["epochs"]]
    trajectories = np.array([epoch["trajectory"] for epoch in epochs])
    start, end = trajectories[:, 0], trajectories[:, -1]
    steps = np.diff(trajectories, axis=1)
    last_two = trajectories[:, -1] - trajectories[:, -3] if trajectories.shape[1] >= 3 else np.full(len(epochs), np.nan)
    common, specific, lagged = [], [], []
    for run in runs:
        previous = None
        for epoch in run["epochs"]:
            shift = np.asarray(epoch["other_walks_end"]) - np.asarray(epoch["other_walks_start"])
            common.append(float(shift.mean()))
            specific.extend((shift - shift.mean()).tolist())
            if previous is not None:
                lagged.append((previous, common[-1]))
            previous = common[-1]
    lagged = np.array(lagged)
    planned = np.array([epoch["planned_hardness"] for epoch in epochs])
    return {
        "target": target, "epochs": len(epochs), "steps_per_epoch": int(steps.shape[1]),
        "as_walked": {"mean": float(planned.mean()), "sd": float(planned.std()),
                      "within": int(np.sum(np.abs(planned - target) <= ON_TARGET))},
        "end": {"mean": float(end.mean()), "sd": float(end.std()), "within": int(np.sum(np.abs(end - target) <= ON_TARGET)),
                "worst": float(end[np.argmax(np.abs(end - target))])},
        "start_to_end": {"mean": float((end - start).mean()), "sd": float((end - start).std())},
        "one_step": {"mean": float(steps.mean()), "sd": float(steps.std()), "largest_drop": float(steps.min())},
        "last_two_steps": {"mean": float(np.mean(last_two)), "sd": float(np.std(last_two)),
                           "largest_drop": float(np.min(last_two))},
        "other_walks": {"walks_per_epoch": len(epochs[0]["other_walks_start"]) if epochs else 0,
                        "common_sd": float(np.std(common)), "specific_sd": float(np.std(specific)),
                        "common_mean": float(np.mean(common)),
                        "common_lag1_correlation": float(np.corrcoef(lagged.T)[0, 1]) if len(lagged) > 2 else float("nan")},
    }


def markdown(summary: dict, runs: list[dict], header: str) -> str:
    s, t = summary, summary["target"]
    rows = [
        ("as walked (`planned_hardness`)", s["as_walked"]["mean"], s["as_walked"]["sd"], f"{s['as_walked']['within']} of {s['epochs']}", ""),
        ("at the epoch's end (`relative_hardness`)", s["end"]["mean"], s["end"]["sd"], f"{s['end']['within']} of {s['epochs']}",
         f"worst {s['end']['worst']:.3f}"),
        ("change, start to end", s["start_to_end"]["mean"], s["start_to_end"]["sd"], "", ""),
        ("change in one step", s["one_step"]["mean"], s["one_step"]["sd"], "", f"largest drop {s['one_step']['largest_drop']:.3f}"),
        ("change in the last two steps", s["last_two_steps"]["mean"], s["last_two_steps"]["sd"], "",
         f"largest drop {s['last_two_steps']['largest_drop']:.3f}"),
        (f"other walks: shift common to all {s['other_walks']['walks_per_epoch']} (end minus start)",
         s["other_walks"]["common_mean"], s["other_walks"]["common_sd"], "",
         f"lag-1 correlation {s['other_walks']['common_lag1_correlation']:+.2f}"),
        ("other walks: shift around the common one", 0.0, s["other_walks"]["specific_sd"], "", ""),
    ]
    scope = f"Relative hardness, target {t:g}, {s['epochs']} walked epochs of {s['steps_per_epoch']} steps ({len(runs)} seeds)."
    lines = [header, "", scope, "",
             f"| quantity | mean | sd | epochs within {ON_TARGET:g} | note |", "|---|---|---|---|---|"]
    lines += [f"| {name} | {mean:+.3f} | {sd:.3f} | {within} | {note} |" for name, mean, sd, within, note in rows]
    lines += ["", "Accuracy per seed: " + ", ".join(f"{run['seed']}: {100 * run['accuracy']:.2f}" for run in runs), ""]
    return "\n".join(lines)


def plot(runs: list[dict], target: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for run in runs:
        for epoch in run["epochs"]:
            values = epoch["trajectory"]
            missed = abs(values[-1] - target) > ON_TARGET
            left.plot(range(len(values)), values, color="tab:red" if missed else "0.6",
                      alpha=0.9 if missed else 0.35, lw=1.4 if missed else 0.8, zorder=3 if missed else 2)
    left.axhspan(target - ON_TARGET, target + ON_TARGET, color="tab:green", alpha=0.12, label=f"target ± {ON_TARGET:g}")
    left.set(xlabel="optimizer steps into the epoch (0: the bank it was walked on)", ylabel="relative hardness of the epoch",
             title="Each walked epoch, re-measured after every step\n(red: off target at the epoch's end)")
    left.legend(loc="lower left")
    for run in runs:
        shifts = [float(np.mean(np.subtract(e["other_walks_end"], e["other_walks_start"]))) for e in run["epochs"]]
        right.scatter(shifts[:-1], shifts[1:], s=14, color="tab:blue", alpha=0.7)
    right.axhline(0, color="0.7", lw=0.8)
    right.axvline(0, color="0.7", lw=0.8)
    right.set(xlabel="shift common to every walk, previous epoch", ylabel="same, this epoch",
              title="The common shift does not carry over\nfrom one epoch to the next")
    fig.tight_layout()
    save_png(fig, path, dpi=120)
    plt.close(fig)


MODALITIES = {
    # modality: (runs, dataset, root, epochs, batch size)
    "graph": (graph_runs, "MUTAG", "../shared/data/tu", 20, 32),
    "vision": (vision_runs, "Fashion-MNIST", "../shared/data/fashion-mnist", 10, 256),
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modality", choices=sorted(MODALITIES), default="graph",
                        help="graph: GraphCL on a TU dataset; vision: SimCLR on Fashion-MNIST")
    parser.add_argument("--root", type=Path, default=None, help="data folder (default: by modality, in ../shared/data)")
    parser.add_argument("--dataset", default=None, help="graph: the TU dataset (default MUTAG)")
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0 .. N-1")
    parser.add_argument("--epochs", type=int, default=None, help="default: graph 20, vision 10")
    parser.add_argument("--batch-size", type=int, default=None, help="default: graph 32, vision 256")
    parser.add_argument("--train-size", type=int, default=2000, help="vision: training images (subset of seed 0)")
    parser.add_argument("--test-size", type=int, default=1000, help="vision: test images of the kNN monitor")
    parser.add_argument("--temperature", type=float, default=0.5, help="vision: NT-Xent temperature")
    parser.add_argument("--target-hardness", type=float, default=0.5)
    parser.add_argument("--warmup-epochs", type=int, default=None,
                        help="uniform epochs before the first walked one (default: the integration's, "
                             "graph 1, vision 2 with a target)")
    parser.add_argument("--max-candidate-walks", type=int, default=None, metavar="N",
                        help=MAX_CANDIDATE_WALKS_HELP)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--output-dir", type=Path, default=Path("examples/hardness/drift"))
    parser.add_argument("--quick", action="store_true", help="1 seed, 3 epochs (vision: 512 images): a smoke run")
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    runs_of, dataset, root, epochs, batch_size = MODALITIES[args.modality]
    if args.modality == "vision" and args.dataset is not None:
        parser.error("--dataset is for --modality graph (vision runs Fashion-MNIST)")
    args.dataset, args.root = args.dataset or dataset, args.root or Path(root)
    args.epochs, args.batch_size = args.epochs or epochs, args.batch_size or batch_size
    if args.quick:
        args.seeds, args.epochs, args.train_size, args.test_size = 1, 3, min(args.train_size, 512), min(args.test_size, 256)
    warmup = args.warmup_epochs
    if warmup is None:  # the configs' defaults, with a target
        from batchsampler.integrations.graph.train import GraphCLConfig
        from batchsampler.integrations.vision.train import SimCLRConfig, warmup_epochs
        warmup = (warmup_epochs(SimCLRConfig(target_hardness=args.target_hardness)) if args.modality == "vision"
                  else GraphCLConfig.warmup_epochs)
    if (args.seeds < 1 or warmup < 1 or args.epochs <= warmup or args.batch_size < 2
            or args.train_size < 2 or args.test_size < 1 or not 0.0 <= args.target_hardness <= 1.0
            or (args.max_candidate_walks is not None and args.max_candidate_walks < 1)):
        parser.error("--seeds >= 1, --warmup-epochs >= 1, --epochs > --warmup-epochs, --batch-size >= 2, "
                     "--train-size >= 2, --test-size >= 1, --target-hardness in [0, 1] and "
                     "--max-candidate-walks >= 1 are required")
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logger.setLevel(logging.INFO)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    runs = [follow_run(train, encode, seed, args.batch_size)
            for train, encode, seed in tqdm(runs_of(args), total=args.seeds, desc="seeds", unit="run")]
    summary = summarize(runs, args.target_hardness)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    command = " ".join(["python", "examples/hardness_drift.py", *argv])
    header = f"# {args.dataset}: an epoch's hardness through its steps\n\n`{command}`"
    write_text(args.output_dir / "drift.json", json.dumps(
        {"argv": argv, "modality": args.modality, "dataset": args.dataset, "wall_seconds": time.perf_counter() - started,
         "summary": summary, "runs": runs}, indent=1))
    write_text(args.output_dir / "drift.md", markdown(summary, runs, header))
    plot(runs, args.target_hardness, args.output_dir / "drift.png")
    logger.info("%s", markdown(summary, runs, header))
    return 0


if __name__ == "__main__":
    sys.exit(main())
