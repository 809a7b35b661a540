"""Unsupervised GraphCL training with any sampler and loss of the package."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch_geometric.loader import DataLoader as GraphDataLoader
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
from .augment import AUGMENTATIONS
from .data import GraphCLDataset
from .evaluate import svm_accuracy
from .model import GraphCLModel

__all__ = ["GraphCLConfig", "sampler_options", "train_graphcl"]

logger = logging.getLogger(__name__)


@dataclass
class GraphCLConfig:
    """One GraphCL run. Defaults follow the GraphCL unsupervised TU protocol.

    Sampler options ``k`` and ``m`` default to values scaled to the dataset size
    (see :func:`sampler_options`); ``refresh_every=None`` rebuilds the graph once per epoch.

    ``bank`` is the space of the embeddings fed back to the sampler each step (and of the
    hardness statistics): ``"projection"`` (default: the normalised projection-head outputs of
    both views, concatenated), ``"backbone"`` (the normalised GIN graph embeddings before the
    head, both views concatenated the same way) or ``"both"`` (the two concatenated, each block
    scaled by ``1 / sqrt(2)``); see :data:`batchsampler.integrations._arms.BANK_SPACES`. The
    loss and its gradients are the same for every ``bank``. ``replacement`` is passed to every
    sampler, ``target_hardness`` (``None``: not passed) to the ``"batchsampler"`` sampler only,
    which is the only sampler it may be set with.
    ``drift_epochs`` and ``max_candidate_walks`` (``None``: the sampler's default) go with the
    target (see :class:`~batchsampler.BatchSampler`).
    """

    sampler: str = "batchsampler"
    loss: str = "ntxent"
    epochs: int = 20
    batch_size: int = 128
    lr: float = 0.01
    hidden: int = 32
    num_layers: int = 3
    temperature: float = 0.2
    aug_ratio: float = 0.2
    augmentations: tuple[str, ...] = tuple(AUGMENTATIONS)
    k: int | None = None
    m: int | None = None
    restart_prob: float = 0.2
    refresh_every: int | None = None
    warmup_epochs: int = 1
    seed: int = 0
    loss_options: dict = field(default_factory=dict)
    bank: str = "projection"
    target_hardness: float | None = None
    replacement: bool = False
    drift_epochs: int = 0
    max_candidate_walks: int | None = None


def sampler_options(config: GraphCLConfig, num_graphs: int) -> dict:
    """Sampler keyword arguments for ``num_graphs`` instances.

    Defaults: ``k = min(100, N // 10)`` neighbours among ``m = min(1000, N // 2)`` candidates,
    i.e. the paper's K = 100, M = 1000 on large datasets and the same proportions on small ones.
    ``replacement`` always, and ``target_hardness`` when set.
    """
    k, m = scaled_graph_size(num_graphs, config.k, config.m)
    batches_per_epoch = -(-num_graphs // config.batch_size)
    return dict(
        k=k, m=m, restart_prob=config.restart_prob, seed=config.seed,
        refresh_every=config.refresh_every or batches_per_epoch, warmup_epochs=config.warmup_epochs,
        background=False, **sampler_extras(config),
    )


def train_graphcl(
    dataset, config: GraphCLConfig, *, progress: bool = False, on_step: StepCallback | None = None
) -> dict:
    """Train GraphCL on ``dataset`` (a sequence of labelled PyG graphs) and evaluate it.

    Each step feeds both views' normalised embeddings in the space ``config.bank`` (default:
    the projections) back with ``sampler.update``; graph embeddings and projections come from
    the same forward pass.

    ``on_step(epoch, step, indices, model, sampler)``, if given, is called after every
    optimizer step (see :data:`~batchsampler.integrations._arms.StepCallback`;
    ``examples/hardness_drift.py`` follows an epoch's hardness through its steps with it); its
    time is left out of ``train_seconds``.

    Returns:
        ``{"config", "accuracy", "accuracy_std", "epochs": [per-epoch loss and batch
        statistics], "train_seconds", "eval_seconds"}``; accuracy is the 10-fold linear-SVM
        accuracy of the frozen embeddings.

    Raises:
        ValueError: on an unknown sampler or loss name, a loss that needs labels, an unknown
            ``config.bank``, or a ``config.target_hardness`` with a sampler other than
            ``"batchsampler"`` (or not finite).
        TypeError: on a non-bool ``config.replacement`` or a non-real ``config.target_hardness``.
    """
    if config.sampler not in SAMPLERS:
        raise ValueError(f"config.sampler must be one of {sorted(SAMPLERS)}, got {config.sampler!r}")
    check_run_options(config)
    loss_fn = get_loss(config.loss, temperature=config.temperature, **config.loss_options)
    if getattr(loss_fn, "requires_labels", False):
        raise ValueError(f"config.loss {config.loss!r} needs labels; unsupervised GraphCL has none")
    torch.manual_seed(config.seed)
    graphs = [dataset[i] for i in range(len(dataset))]
    labels = np.array([int(g.y) for g in graphs])
    views = GraphCLDataset(graphs, config.augmentations, config.aug_ratio, seed=config.seed)
    sampler = SAMPLERS[config.sampler](len(graphs), config.batch_size, **sampler_options(config, len(graphs)))
    loader = GraphDataLoader(views, batch_sampler=sampler)
    model = GraphCLModel(graphs[0].num_node_features, config.hidden, config.num_layers)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)

    epochs, callback_seconds = [], 0.0
    start = time.perf_counter()
    bar = tqdm(range(config.epochs), desc=f"{config.sampler}/{config.loss}", unit="epoch", disable=not progress, leave=False)
    for epoch in bar:
        model.train()
        total, batches = 0.0, []
        for step, (indices, view1, view2) in enumerate(loader):
            batches.append(indices.tolist())
            (h1, z1), (h2, z2) = model.encode_and_project(view1), model.encode_and_project(view2)
            loss = loss_fn(z1, z2)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item()
            if config.bank != "encoded":
                sampler.update(indices, bank_rows(config.bank, (z1, z2), (h1, h2)))
            callback_seconds += call_on_step(on_step, epoch, step, indices, model, sampler)
        # The eval-mode encoding: the "encoded" bank, and a space in which every arm's hardness compares.
        encoded = embed_graphs(model, graphs)
        if config.bank == "encoded":
            sampler.update(np.arange(len(graphs)), encoded)
        summary = summarize_epoch(batches, len(graphs), labels=labels, embeddings=_bank_or_none(sampler))
        epochs.append({"epoch": epoch, "loss": total / len(batches), **summary.as_dict(),
                       **epoch_hardness(sampler, batches, sampler.bank.numpy(), valid=sampler.bank.seen,
                                        encoded=encoded),
                       "graph_version": getattr(sampler, "graph_version", 0)})
        bar.set_postfix(loss=f"{total / len(batches):.3f}")
    train_seconds = time.perf_counter() - start - callback_seconds  # the callback's time is not training's

    start = time.perf_counter()
    embeddings = embed_graphs(model, graphs)
    accuracy, accuracy_std = svm_accuracy(embeddings, labels, seed=config.seed)
    return {
        "config": asdict(config),
        "accuracy": accuracy,
        "accuracy_std": accuracy_std,
        "epochs": epochs,
        "train_seconds": train_seconds,
        "eval_seconds": time.perf_counter() - start,
    }


@torch.no_grad()
def embed_graphs(model: GraphCLModel, graphs, batch_size: int = 256) -> np.ndarray:
    """Frozen embeddings ``[N, hidden * num_layers]`` of un-augmented graphs."""
    model.eval()
    return torch.cat([model.embed(batch) for batch in GraphDataLoader(graphs, batch_size=batch_size)]).numpy()


def _bank_or_none(sampler):
    # Hardness is measured with the bank, i.e. the embeddings the sampler itself sees.
    return sampler.bank.numpy() if sampler.bank.seen.all() else None
