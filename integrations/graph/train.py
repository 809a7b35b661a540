"""Unsupervised GraphCL training with any sampler and loss of the package."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch_geometric.loader import DataLoader as GraphDataLoader
from tqdm.auto import tqdm

from batchsampler import SAMPLERS, scaled_graph_size
from batchsampler.diagnostics import summarize_epoch
from batchsampler.losses import get_loss

from .augment import AUGMENTATIONS
from .data import GraphCLDataset
from .evaluate import svm_accuracy
from .model import GraphCLModel

__all__ = ["GraphCLConfig", "train_graphcl", "sampler_options"]

logger = logging.getLogger(__name__)


@dataclass
class GraphCLConfig:
    """One GraphCL run. Defaults follow the GraphCL unsupervised TU protocol.

    Sampler options ``k`` and ``m`` default to values scaled to the dataset size
    (see :func:`sampler_options`); ``refresh_every=None`` rebuilds the graph once per epoch.
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


def sampler_options(config: GraphCLConfig, num_graphs: int) -> dict:
    """Sampler keyword arguments for ``num_graphs`` instances.

    Defaults: ``k = min(100, N // 10)`` neighbours among ``m = min(1000, N // 2)`` candidates,
    i.e. the paper's K = 100, M = 1000 on large datasets and the same proportions on small ones.
    """
    k, m = scaled_graph_size(num_graphs, config.k, config.m)
    batches_per_epoch = -(-num_graphs // config.batch_size)
    return dict(
        k=k, m=m, restart_prob=config.restart_prob, seed=config.seed,
        refresh_every=config.refresh_every or batches_per_epoch, warmup_epochs=config.warmup_epochs,
        background=False,
    )


def train_graphcl(dataset, config: GraphCLConfig, *, progress: bool = False) -> dict:
    """Train GraphCL on ``dataset`` (a sequence of labelled PyG graphs) and evaluate it.

    Returns:
        ``{"config", "accuracy", "accuracy_std", "epochs": [per-epoch loss and batch
        statistics], "train_seconds", "eval_seconds"}``; accuracy is the 10-fold linear-SVM
        accuracy of the frozen embeddings.

    Raises:
        ValueError: on an unknown sampler or loss name, or a loss that needs labels.
    """
    if config.sampler not in SAMPLERS:
        raise ValueError(f"config.sampler must be one of {sorted(SAMPLERS)}, got {config.sampler!r}")
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

    epochs = []
    start = time.perf_counter()
    bar = tqdm(range(config.epochs), desc=f"{config.sampler}/{config.loss}", unit="epoch", disable=not progress, leave=False)
    for epoch in bar:
        model.train()
        total, batches = 0.0, []
        for indices, view1, view2 in loader:
            batches.append(indices.tolist())
            z1, z2 = model(view1), model(view2)
            loss = loss_fn(z1, z2)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item()
            sampler.update(indices, torch.cat([F.normalize(z1, dim=1), F.normalize(z2, dim=1)], dim=1))
        summary = summarize_epoch(batches, len(graphs), labels=labels, embeddings=_bank_or_none(sampler))
        epochs.append({"epoch": epoch, "loss": total / len(batches), **summary.as_dict(),
                       "graph_version": getattr(sampler, "graph_version", 0)})
        bar.set_postfix(loss=f"{total / len(batches):.3f}")
    train_seconds = time.perf_counter() - start

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
