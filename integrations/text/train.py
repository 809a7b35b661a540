"""Unsupervised SimCSE (Gao et al., EMNLP 2021) with any sampler and loss of the package.

The positive of a sentence is the same sentence encoded a second time: both views go through
the encoder in train mode in one forward pass of ``2B`` rows, so each row gets its own dropout
mask. The sampler chooses which ``B`` sentences share a batch.

The sampler's bank is seeded with the starting model's embeddings of the whole training slice
and its first graph is built at step 0 (``warmup_epochs=0``): the starting model (MiniLM) is
already a good sentence encoder, so a uniform warm-up epoch would only spend the step budget
on easy batches. From then on every step feeds the batch's (detached) training embeddings back
with ``sampler.update`` and the graph is rebuilt inline every ``refresh_every`` batches.

Unlike the vision and graph integrations there is no ``bank`` setting: the encoder is a
sentence-transformers model whose own pooling (mean pooling, then L2 normalisation, for
MiniLM) gives the embeddings the loss trains *and* those evaluated on STS; there is no
projection head (SimCSE's MLP pooler is not part of these models), so a "projection" and a
"backbone" bank would be the same rows.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from batchsampler import SAMPLERS, scaled_graph_size
from batchsampler.diagnostics import summarize_epoch
from batchsampler.losses import get_loss

from .._arms import check_run_options, sampler_extras
from .data import IndexedSentences, STSPairs
from .evaluate import evaluate_sts
from .model import SentenceEncoder

__all__ = ["SimCSEConfig", "default_eval_names", "sampler_options", "train_simcse"]

logger = logging.getLogger(__name__)


@dataclass
class SimCSEConfig:
    """One SimCSE run. Defaults follow unsupervised SimCSE (temperature 0.05, batch 64,
    lr 3e-5, max length 32, STS-B dev for model selection) except the step budget.

    ``k`` and ``m`` default to values scaled to the corpus slice (see :func:`sampler_options`);
    ``model=None`` is the packaged all-MiniLM-L6-v2. ``replacement`` is passed to every sampler,
    ``target_hardness`` (``None``: not passed) to the ``"batchsampler"`` sampler only, which is
    the only sampler it may be set with.
    """

    sampler: str = "batchsampler"
    loss: str = "ntxent"
    model: str | None = None
    steps: int = 250
    batch_size: int = 64
    lr: float = 3e-5
    temperature: float = 0.05
    max_length: int = 32
    eval_every: int = 125
    selection_set: str = "STS-B dev"
    k: int | None = None
    m: int | None = None
    restart_prob: float = 0.2
    refresh_every: int = 25
    seed: int = 0
    eval_batch_size: int = 128
    loss_options: dict = field(default_factory=dict)
    target_hardness: float | None = None
    replacement: bool = False


def sampler_options(config: SimCSEConfig, num_sentences: int) -> dict:
    """Sampler keyword arguments for ``num_sentences`` instances.

    ``k = min(100, N // 10)`` among ``m = min(1000, N // 2)`` candidates: the paper's K = 100,
    M = 1000 on large slices and the same proportions on small ones. ``replacement`` always,
    and ``target_hardness`` when set.
    """
    k, m = scaled_graph_size(num_sentences, config.k, config.m)
    return {
        "k": k, "m": m, "restart_prob": config.restart_prob, "seed": config.seed, "refresh_every": config.refresh_every,
        "warmup_epochs": 0, "background": False, **sampler_extras(config),
    }


def default_eval_names(sets: Mapping[str, STSPairs]) -> list[str]:
    """The sets scored after training: all but training and dev splits (``"... train"``,
    ``"... dev"``); the dev score of the selected checkpoint is reported as ``best_dev``."""
    return [name for name in sets if not name.endswith((" train", " dev"))]


def _check(config: SimCSEConfig, sentences: Sequence[str], sts_sets: Mapping[str, STSPairs], initial) -> None:
    if config.sampler not in SAMPLERS:
        raise ValueError(f"config.sampler must be one of {sorted(SAMPLERS)}, got {config.sampler!r}")
    check_run_options(config)
    for name in ("steps", "batch_size", "eval_every", "refresh_every", "max_length", "eval_batch_size"):
        if getattr(config, name) < 1:
            raise ValueError(f"config.{name} must be >= 1, got {getattr(config, name)}")
    if not 2 <= config.batch_size <= len(sentences):
        raise ValueError(f"config.batch_size must be in [2, {len(sentences)}] (the corpus size), got {config.batch_size}")
    if config.selection_set not in sts_sets:
        raise ValueError(f"config.selection_set must be a loaded STS set ({sorted(sts_sets)}), got {config.selection_set!r}")
    if initial is not None and (np.ndim(initial) != 2 or len(initial) != len(sentences)):
        raise ValueError(f"initial_embeddings must be [{len(sentences)}, d], got shape {np.shape(initial)}")


def train_simcse(
    sentences: Sequence[str],
    sts_sets: Mapping[str, STSPairs],
    config: SimCSEConfig,
    *,
    initial_embeddings: np.ndarray | None = None,
    eval_names: Sequence[str] | None = None,
    progress: bool = False,
) -> dict:
    """Train SimCSE for ``config.steps`` steps, select the checkpoint by STS-B dev, score it.

    The selection set is scored every ``eval_every`` steps and after the last step (not at
    step 0: the untrained model is the separate reference row); the best checkpoint is kept
    in memory and restored before the final scoring.

    Args:
        sentences: the ``N`` training sentences.
        sts_sets: loaded STS sets; must contain ``config.selection_set``.
        config: the run.
        initial_embeddings: ``[N, d]`` starting-model embeddings of ``sentences`` (computed here
            if ``None``; pass them to share one encoding pass between runs).
        eval_names: sets scored at the end (default :func:`default_eval_names`).
        progress: show a tqdm bar over steps.

    Returns:
        ``{"config", "scores" ({set: Spearman x100} of the selected checkpoint), "best_step",
        "best_dev", "dev_history" ([{"step", "dev"}]), "losses" (per step), "batch_stats"
        (in-batch cosine etc. in the starting model's space), "graph_builds",
        "sampler_seconds", "train_seconds", "eval_seconds"}``.

    Raises:
        ValueError: on an unknown sampler or loss, a loss that needs labels, sizes < 1,
            ``batch_size`` outside ``[2, N]``, a missing selection set, mis-shaped embeddings, or
            a ``config.target_hardness`` with a sampler other than ``"batchsampler"`` (or not
            finite).
        TypeError: on a non-bool ``config.replacement`` or a non-real ``config.target_hardness``.
    """
    _check(config, sentences, sts_sets, initial_embeddings)
    loss_fn = get_loss(config.loss, temperature=config.temperature, **config.loss_options)
    if getattr(loss_fn, "requires_labels", False):
        raise ValueError(f"config.loss {config.loss!r} needs labels; unsupervised SimCSE has none")
    eval_names = default_eval_names(sts_sets) if eval_names is None else list(eval_names)
    torch.manual_seed(config.seed)  # dropout masks: the only randomness of the model's forward
    encoder = SentenceEncoder(config.model, config.max_length)
    eval_seconds = 0.0
    if initial_embeddings is None:
        began = time.perf_counter()
        initial_embeddings = encoder.encode(list(sentences), config.eval_batch_size)
        eval_seconds += time.perf_counter() - began

    num = len(sentences)
    sampler = SAMPLERS[config.sampler](num, config.batch_size, **sampler_options(config, num))
    sampler.update(np.arange(num), initial_embeddings)  # the first scheduled build (step 0) uses these
    # num_workers=0: the batch sampler (and FAISS inside it) must run in the main process.
    loader = DataLoader(IndexedSentences(list(sentences)), batch_sampler=sampler,
                        collate_fn=IndexedSentences.collate, num_workers=0)
    optimizer = torch.optim.AdamW(encoder.parameters(), lr=config.lr, foreach=True)  # foreach: far faster on CPU
    # SimCSE's schedule (HF Trainer default): linear decay to zero, no warm-up.
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 - step / config.steps)

    step, losses, batches, dev_history = 0, [], [], []
    best_dev, best_step, best_state = -np.inf, 0, None
    train_seconds = 0.0
    bar = tqdm(total=config.steps, desc=f"{config.sampler}/{config.loss}/s{config.seed}", unit="step",
               disable=not progress, leave=False)
    began = time.perf_counter()
    while step < config.steps:
        for indices, texts in loader:
            encoder.train()
            embeddings = encoder(texts + texts)
            z1, z2 = embeddings[: len(texts)], embeddings[len(texts):]
            loss = loss_fn(z1, z2)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            sampler.update(indices, F.normalize((z1 + z2).detach(), dim=1))
            step += 1
            losses.append(loss.item())
            batches.append(indices)
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
            if step % config.eval_every == 0 or step == config.steps:
                train_seconds += time.perf_counter() - began
                began = time.perf_counter()
                dev = evaluate_sts(lambda s: encoder.encode(s, config.eval_batch_size), sts_sets, [config.selection_set])
                dev_history.append({"step": step, "dev": dev[config.selection_set]})
                if dev[config.selection_set] > best_dev:
                    best_dev, best_step = dev[config.selection_set], step
                    best_state = {k: v.detach().clone() for k, v in encoder.state_dict().items()}
                eval_seconds += time.perf_counter() - began
                began = time.perf_counter()
            if step == config.steps:
                break
    bar.close()
    train_seconds += time.perf_counter() - began
    summary = summarize_epoch(batches, num, embeddings=initial_embeddings)

    began = time.perf_counter()
    encoder.load_state_dict(best_state)
    scores = evaluate_sts(lambda s: encoder.encode(s, config.eval_batch_size), sts_sets, eval_names)
    eval_seconds += time.perf_counter() - began
    logger.info("%s %s seed %d: best dev %.2f at step %d; %s", config.sampler, config.loss, config.seed,
                best_dev, best_step, scores)
    return {
        "config": asdict(config),
        "num_sentences": num,
        "scores": scores,
        "best_step": best_step,
        "best_dev": best_dev,
        "dev_history": dev_history,
        "losses": losses,
        "batch_stats": summary.as_dict(),
        "graph_builds": getattr(sampler, "graph_version", 0),
        "sampler_seconds": sampler.sampler_seconds,
        "train_seconds": train_seconds,
        "eval_seconds": eval_seconds,
    }
