"""Unsupervised SimCSE (Gao et al., EMNLP 2021) with any sampler and loss of the package.

The positive of a sentence is the same sentence encoded a second time: both views go through
the encoder in train mode in one forward pass of ``2B`` rows, so each row gets its own dropout
mask. The sampler chooses which ``B`` sentences share a batch.

The sampler's bank is seeded with the starting model's embeddings of the whole training slice
and its first graph is built at step 0 (``warmup_epochs=0``): the starting model (MiniLM) is
already a good sentence encoder, so a uniform warm-up epoch would only spend the step budget
on easy batches. From then on every step feeds the batch's (detached) training embeddings back
with ``sampler.update`` (in the space ``bank``, below) and the graph is rebuilt inline every
``refresh_every`` batches.

The encoder is a sentence-transformers model whose own pooling (mean pooling, then L2
normalisation, for MiniLM) gives the sentence embeddings evaluated on STS. ``head`` chooses
what the loss sees:

* ``"none"`` (default): those embeddings themselves;
* ``"mlp"``: SimCSE's training-time MLP pooler (:class:`~.model.MLPHead`, ``Linear(d, d)``
  then ``tanh``) over them, trained with the encoder and dropped at evaluation, as unsupervised
  SimCSE does (``--mlp_only_train``). STS evaluation and model selection always use the
  encoder without the head.

``bank`` chooses the rows fed back to the sampler, as in the vision and graph integrations
(see :data:`batchsampler.integrations._arms.BANK_SPACES`), with one row per sentence of a step
in the space of the seed (the two dropout views summed, then L2-normalised, rather than the
views concatenated as there: the starting model's encoding that seeds the bank has one view):

* ``"projection"`` (default): the rows the loss sees, i.e. the head's outputs with a head;
* ``"backbone"``: the pooled encoder embeddings (before the head);
* ``"both"``: the two concatenated, each block scaled by ``1 / sqrt(2)`` (``[B, 2 d]``);
* ``"encoded"``: no rows from the training steps; right before every scheduled graph rebuild
  after step 0 (every ``refresh_every`` steps) the whole training slice is re-encoded by the
  current encoder in eval mode (no dropout, no head) and stored, so each graph is built from an
  encoding of one model (the step-0 graph from the starting model's, the seed). Samplers
  without a graph (``"uniform"``) never read the bank, and are not given the re-encodings.

Without a head, ``"projection"`` and ``"backbone"`` are the same rows (and ``"both"`` has the
same cosine similarities): the settings are accepted and give the same run. With
``head="none"`` and ``bank="projection"`` a run is the one of the code before these settings,
bit for bit.

The seed is the starting model's embeddings in the space ``bank``: as given for
``"backbone"``, ``"encoded"`` and ``"projection"`` without a head; the initial head's outputs on
them, L2-normalised, for ``"projection"`` with a head; the two spaces concatenated as above for
``"both"``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from batchsampler import SAMPLERS, scaled_graph_size
from batchsampler.diagnostics import summarize_epoch
from batchsampler.losses import get_loss

from .._arms import bank_rows, check_run_options, sampler_extras
from .data import IndexedSentences, STSPairs
from .evaluate import evaluate_sts
from .model import HEADS, MLPHead, SentenceEncoder

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
    ``drift_epochs`` and ``max_candidate_walks`` (``None``: the sampler's default) go with the
    target (see :class:`~batchsampler.BatchSampler`).

    ``head`` (one of :data:`~.model.HEADS`, default ``"none"``): ``"mlp"`` puts SimCSE's MLP
    pooler between the encoder and the loss during training only. ``bank`` (one of
    :data:`batchsampler.integrations._arms.BANK_SPACES`, default ``"projection"``): the rows fed
    back to the sampler, see :mod:`batchsampler.integrations.text.train`. The defaults are the
    runs made before these settings existed.
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
    drift_epochs: int = 0
    max_candidate_walks: int | None = None
    head: str = "none"
    bank: str = "projection"


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
    if not isinstance(config.head, str) or config.head not in HEADS:
        raise ValueError(f"config.head must be one of {list(HEADS)}, got {config.head!r}")
    for name in ("steps", "batch_size", "eval_every", "refresh_every", "max_length", "eval_batch_size"):
        if getattr(config, name) < 1:
            raise ValueError(f"config.{name} must be >= 1, got {getattr(config, name)}")
    if not 2 <= config.batch_size <= len(sentences):
        raise ValueError(f"config.batch_size must be in [2, {len(sentences)}] (the corpus size), got {config.batch_size}")
    if config.selection_set not in sts_sets:
        raise ValueError(f"config.selection_set must be a loaded STS set ({sorted(sts_sets)}), got {config.selection_set!r}")
    if initial is not None and (np.ndim(initial) != 2 or len(initial) != len(sentences)):
        raise ValueError(f"initial_embeddings must be [{len(sentences)}, d], got shape {np.shape(initial)}")


def _seed_rows(bank: str, initial: np.ndarray, head: MLPHead | None) -> np.ndarray:
    """The bank's rows before training: ``initial`` ``[N, d]`` (the starting model's embeddings)
    in the space ``bank``; ``[N, d]``, or ``[N, 2 d]`` for ``"both"``."""
    if bank in ("backbone", "encoded") or (bank == "projection" and head is None):
        return initial  # as given: the seed of the runs before the bank setting
    features = torch.as_tensor(np.asarray(initial, dtype=np.float32))
    with torch.no_grad():
        projections = features if head is None else head(features.to(head.dense.weight.device)).cpu()
    return bank_rows(bank, [projections], [features]).numpy()


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
    step 0: the untrained model is the separate reference row); the best checkpoint (of the
    encoder: the head, if any, is not evaluated) is kept in memory and restored before the
    final scoring.

    Args:
        sentences: the ``N`` training sentences.
        sts_sets: loaded STS sets; must contain ``config.selection_set``.
        config: the run.
        initial_embeddings: ``[N, d]`` starting-model embeddings of ``sentences``, from
            :meth:`SentenceEncoder.encode` (computed here if ``None``; pass them to share one
            encoding pass between runs). They seed the bank (see the module docstring).
        eval_names: sets scored at the end (default :func:`default_eval_names`).
        progress: show a tqdm bar over steps.

    Returns:
        ``{"config", "scores" ({set: Spearman x100} of the selected checkpoint), "best_step",
        "best_dev", "dev_history" ([{"step", "dev"}]), "losses" (per step), "batch_stats"
        (in-batch cosine etc. in the starting model's space), "graph_builds",
        "sampler_seconds", "train_seconds", "eval_seconds"}``.

    Raises:
        ValueError: on an unknown sampler, loss, ``config.bank`` or ``config.head``, a loss that
            needs labels, sizes < 1, ``batch_size`` outside ``[2, N]``, a missing selection set,
            mis-shaped embeddings, or a ``config.target_hardness`` with a sampler other than
            ``"batchsampler"`` (or not finite). All before the model is loaded.
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
    # Its own generator: the global one (the dropout masks) is the same with and without a head.
    head = MLPHead(encoder.dimension, seed=config.seed).to(encoder.device) if config.head == "mlp" else None
    sampler = SAMPLERS[config.sampler](num, config.batch_size, **sampler_options(config, num))
    # The first scheduled build (step 0) uses these.
    sampler.update(np.arange(num), _seed_rows(config.bank, initial_embeddings, head))
    # "encoded": the slice is re-encoded right before each rebuild. A graph sampler built with
    # warmup_epochs=0, background=False and refresh_every=r rebuilds inline when batches
    # 0, r, 2r, ... are drawn, and with num_workers=0 batch s is drawn after step s (no
    # prefetch); samplers without a graph never read the bank.
    reencode = config.bank == "encoded" and getattr(sampler, "refresh_every", None) is not None
    # num_workers=0: the batch sampler (and FAISS inside it) must run in the main process.
    loader = DataLoader(IndexedSentences(list(sentences)), batch_sampler=sampler,
                        collate_fn=IndexedSentences.collate, num_workers=0)
    parameters = encoder.parameters() if head is None else [*encoder.parameters(), *head.parameters()]
    optimizer = torch.optim.AdamW(parameters, lr=config.lr, foreach=True)  # foreach: far faster on CPU
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
            p1, p2 = (z1, z2) if head is None else (head(z1), head(z2))
            loss = loss_fn(p1, p2)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            if config.bank != "encoded":
                # One "view" per space, the sum of the two dropout views: rows of the seed's shape.
                sampler.update(indices, bank_rows(config.bank, [p1 + p2], [z1 + z2]))
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
            if reencode and step % config.refresh_every == 0 and step < config.steps:
                # Part of this arm's training (train_seconds), as in the vision integration.
                sampler.update(np.arange(num), encoder.encode(list(sentences), config.eval_batch_size))
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
