"""SimCLR training with any sampler and loss of the package."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from batchsampler import SAMPLERS, scaled_graph_size
from batchsampler.diagnostics import summarize_epoch
from batchsampler.losses import get_loss

from .._arms import (
    StepCallback,
    bank_rows,
    call_on_step,
    check_run_options,
    epoch_hardness,
    sampler_extras,
)
from .augment import AugmentConfig, simclr_view
from .data import ImageData, IndexedImages
from .evaluate import embed_images, knn_monitor, linear_probe
from .model import SimCLRModel

__all__ = ["SimCLRConfig", "resolve_device", "sampler_options", "train_simclr", "warmup_epochs"]

TARGET_WARMUP_EPOCHS = 2
"""Uniform epochs before the first walk when ``target_hardness`` is set and ``warmup_epochs`` is
not: after one, the first walked epoch drifts out of the band while its 8 steps train (SimCLR on
Fashion-MNIST, 5 seeds: 43 of 45 epochs within 0.1 at their end; 40 of 40 after two)."""

logger = logging.getLogger(__name__)


@dataclass
class SimCLRConfig:
    """One SimCLR run. Defaults: the authors' optimiser (Adam 1e-3) and temperature (0.5) with a
    CPU-sized ResNet-10 (width 8, 86 k parameters); ``k`` and ``m`` scale with the dataset (see
    :func:`sampler_options`); ``refresh_every=None`` rebuilds the graph once per epoch.

    ``knn_every`` is the epoch interval of the kNN monitor (the last epoch is always measured);
    ``device="auto"`` takes CUDA when available.

    ``bank`` is the space of the embeddings fed back to the sampler each step (and of the
    hardness statistics): ``"projection"`` (default: the normalised projection-head outputs of
    both views, concatenated), ``"backbone"`` (the normalised encoder features before the head,
    both views concatenated the same way) or ``"both"`` (the two concatenated, each block scaled
    by ``1 / sqrt(2)``); see :data:`batchsampler.integrations._arms.BANK_SPACES`. The loss and
    its gradients are the same for every ``bank``. ``replacement`` is passed to every sampler,
    ``target_hardness`` (``None``: not passed) to the ``"batchsampler"`` sampler only, which is
    the only sampler it may be set with.
    ``drift_epochs`` and ``max_candidate_walks`` (``None``: the sampler's default) go with the
    target (see :class:`~batchsampler.BatchSampler`). ``warmup_epochs`` uniform epochs come
    before the first graph; ``None`` (default): :data:`TARGET_WARMUP_EPOCHS` (2) with a
    ``target_hardness``, 1 without (see :func:`warmup_epochs`).
    """

    sampler: str = "batchsampler"
    loss: str = "ntxent"
    epochs: int = 20
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-6
    width: int = 8
    blocks: tuple[int, ...] = (1, 1, 1, 1)
    projection_dim: int = 64
    temperature: float = 0.5
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    k: int | None = None
    m: int | None = None
    restart_prob: float = 0.2
    refresh_every: int | None = None
    warmup_epochs: int | None = None
    seed: int = 0
    knn_k: int = 200
    knn_temperature: float = 0.1
    knn_every: int = 1
    linear_probe: bool = True
    device: str = "auto"
    loss_options: dict = field(default_factory=dict)
    bank: str = "projection"
    target_hardness: float | None = None
    replacement: bool = False
    drift_epochs: int = 0
    max_candidate_walks: int | None = None


def warmup_epochs(config: SimCLRConfig) -> int:
    """Uniform epochs before the first graph: ``config.warmup_epochs``, or when it is ``None``
    :data:`TARGET_WARMUP_EPOCHS` with a ``target_hardness`` and 1 without one."""
    if config.warmup_epochs is not None:
        return config.warmup_epochs
    return TARGET_WARMUP_EPOCHS if config.target_hardness is not None else 1


def sampler_options(config: SimCLRConfig, num_images: int) -> dict:
    """Sampler keyword arguments for ``num_images`` instances.

    Defaults: ``k = min(100, N // 10)`` neighbours among ``m = min(1000, N // 2)`` candidates
    (the paper's K = 100, M = 1000 on large datasets, the same proportions on small ones), as in
    the graph integration. ``replacement`` always, and ``target_hardness`` when set.
    """
    k, m = scaled_graph_size(num_images, config.k, config.m)
    batches_per_epoch = -(-num_images // config.batch_size)
    return {
        "k": k, "m": m, "restart_prob": config.restart_prob, "seed": config.seed,
        "refresh_every": config.refresh_every or batches_per_epoch, "warmup_epochs": warmup_epochs(config),
        "background": False, **sampler_extras(config),
    }


def resolve_device(device: str) -> torch.device:
    """``"auto"`` -> CUDA if available else CPU; anything else is passed to :class:`torch.device`."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def train_simclr(
    train: ImageData, test: ImageData, config: SimCLRConfig, *, progress: bool = False,
    on_step: StepCallback | None = None,
) -> dict:
    """Train SimCLR on ``train`` (labels unused) and evaluate on ``test``.

    Every epoch has ``ceil(N / batch_size)`` steps whatever the sampler, so runs with different
    samplers have the same step budget. Each step feeds both views' normalised embeddings in
    the space ``config.bank`` (default: the projections, concatenated as in the authors' code)
    back with ``sampler.update``; encoder features and projections come from the same forward
    pass. Runs with the same seed start from the same weights and draw views from the same
    generator. ``on_step(epoch, step, indices, model, sampler)``, if given, is called after
    every optimizer step (see :data:`~batchsampler.integrations._arms.StepCallback`); its time
    is left out of ``train_seconds``.

    Returns:
        ``{"config", "knn_accuracy", "linear_accuracy", "initial_knn_accuracy", "epochs",
        "train_seconds", "monitor_seconds", "eval_seconds"}``: the final weighted-kNN and
        linear-probe test accuracies (``linear_accuracy`` is None when disabled), and per epoch
        the loss, kNN accuracy (None on epochs the monitor skips), batch statistics of
        :func:`batchsampler.diagnostics.summarize_epoch` and the graph version.

    Raises:
        ValueError: on an unknown sampler or loss name, a loss that needs labels, ``epochs`` or
            ``knn_every`` < 1, train and test images of different shapes, an unknown
            ``config.bank``, or a ``config.target_hardness`` with a sampler other than
            ``"batchsampler"`` (or not finite).
        TypeError: on a non-bool ``config.replacement`` or a non-real ``config.target_hardness``.
    """
    if config.sampler not in SAMPLERS:
        raise ValueError(f"config.sampler must be one of {sorted(SAMPLERS)}, got {config.sampler!r}")
    check_run_options(config)
    if config.epochs < 1 or config.knn_every < 1:
        raise ValueError(f"config.epochs and config.knn_every must be >= 1, got {config.epochs}, {config.knn_every}")
    if train.images.shape[1:] != test.images.shape[1:]:
        raise ValueError(f"train and test images must have the same shape, got {tuple(train.images.shape[1:])} "
                         f"and {tuple(test.images.shape[1:])}")
    loss_fn = get_loss(config.loss, temperature=config.temperature, **config.loss_options)
    if getattr(loss_fn, "requires_labels", False):
        raise ValueError(f"config.loss {config.loss!r} needs labels; SimCLR is unsupervised")
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    num_images = len(train)
    sampler = SAMPLERS[config.sampler](num_images, config.batch_size, **sampler_options(config, num_images))
    loader = DataLoader(IndexedImages(train.images), batch_sampler=sampler)
    channels = train.images.shape[1]
    model = SimCLRModel(channels, config.width, config.blocks, config.projection_dim,
                        mean=train.images.mean(dim=(0, 2, 3)).tolist(),
                        std=train.images.std(dim=(0, 2, 3)).clamp(min=1e-3).tolist()).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    views = torch.Generator().manual_seed(config.seed)

    def monitor(train_features: torch.Tensor | None = None) -> float:
        if train_features is None:
            train_features = embed_images(model, train.images, device=device)
        test_features = embed_images(model, test.images, device=device)
        return knn_monitor(train_features, train.labels, test_features, test.labels,
                           k=config.knn_k, temperature=config.knn_temperature)

    start = time.perf_counter()
    initial = monitor()
    monitor_seconds = time.perf_counter() - start
    epochs, train_seconds, callback_seconds = [], 0.0, 0.0
    bar = tqdm(range(config.epochs), desc=f"{config.sampler}/{config.loss}/{config.seed}", unit="epoch",
               disable=not progress, leave=False)
    for epoch in bar:
        model.train()
        start = time.perf_counter()
        total, batches = 0.0, []
        for step, (indices, images) in enumerate(loader):
            batches.append(indices.tolist())
            images = images.to(device, non_blocking=True)
            h1, z1 = model.encode_and_project(simclr_view(images, views, config.augment))
            h2, z2 = model.encode_and_project(simclr_view(images, views, config.augment))
            loss = loss_fn(z1, z2)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item()
            if config.bank != "encoded":
                sampler.update(indices, bank_rows(config.bank, (z1, z2), (h1, h2)))
            callback_seconds += call_on_step(on_step, epoch, step, indices, model, sampler)
        train_seconds += time.perf_counter() - start
        start = time.perf_counter()
        measure = (epoch + 1) % config.knn_every == 0 or epoch == config.epochs - 1
        # The eval-mode encoding of the training set: the "encoded" bank, the kNN monitor's
        # features, and a space in which every arm's hardness compares (monitor time, except
        # for the "encoded" bank, whose training it is part of).
        encoded = embed_images(model, train.images, device=device) if measure or config.bank == "encoded" else None
        if config.bank == "encoded":
            sampler.update(np.arange(num_images), encoded.numpy())
            train_seconds += time.perf_counter() - start
            start = time.perf_counter()
        # Hardness is measured with the bank, i.e. the embeddings the sampler itself sees.
        bank = sampler.bank.numpy() if sampler.bank.seen.all() else None
        summary = summarize_epoch(batches, num_images, labels=train.labels, embeddings=bank)
        accuracy = monitor(encoded) if measure else None
        monitor_seconds += time.perf_counter() - start
        epochs.append({"epoch": epoch, "loss": total / len(batches), "knn_accuracy": accuracy, **summary.as_dict(),
                       **epoch_hardness(sampler, batches, sampler.bank.numpy(), valid=sampler.bank.seen,
                                        encoded=None if encoded is None else encoded.numpy()),
                       "graph_version": getattr(sampler, "graph_version", 0)})
        bar.set_postfix(loss=f"{total / len(batches):.3f}", knn="-" if accuracy is None else f"{accuracy:.3f}")
        logger.debug("%s epoch %d: loss %.4f knn %s", config.sampler, epoch, total / len(batches), accuracy)
    if hasattr(sampler, "close"):
        sampler.close()

    start = time.perf_counter()
    linear = None
    if config.linear_probe:
        linear = linear_probe(embed_images(model, train.images, device=device).numpy(), train.labels,
                              embed_images(model, test.images, device=device).numpy(), test.labels)
    config_dict = {**asdict(config), "warmup_epochs": warmup_epochs(config)}  # records hold the epochs run
    return {
        "config": config_dict,
        "knn_accuracy": epochs[-1]["knn_accuracy"],
        "linear_accuracy": linear,
        "initial_knn_accuracy": initial,
        "epochs": epochs,
        "train_seconds": train_seconds - callback_seconds,  # the callback's time is not training's
        "monitor_seconds": monitor_seconds,
        "eval_seconds": time.perf_counter() - start,
    }
