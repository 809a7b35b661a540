"""The training part of ``batchsampler demo``: a small contrastive encoder on the digits.

The same pieces as ``examples/common.py`` (an MLP with a projection head, pixel-level views,
a leave-one-out kNN monitor), kept inside the package so that the installed command does not
depend on the repository's ``examples/`` folder.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .. import SAMPLERS
from ..diagnostics import SamplerMonitor
from ..losses import NTXentLoss

__all__ = [
    "Encoder", "IndexedDataset", "TourSettings", "augment", "knn_accuracy", "load_digits_pixels", "summarize_run", "train",
]

class IndexedDataset(Dataset):
    """Items are ``(index, row)`` of a tensor ``[N, ...]``, so the loop can call ``update``."""

    def __init__(self, data: torch.Tensor) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor]:
        return index, self.data[index]


def load_digits_pixels() -> tuple[torch.Tensor, np.ndarray]:
    """Digits pixels float32 ``[1797, 64]`` scaled to ``[0, 1]``, and labels int ``[1797]``."""
    from sklearn.datasets import load_digits

    pixels, labels = load_digits(return_X_y=True)
    return torch.tensor(pixels / 16.0, dtype=torch.float32), labels


class Encoder(nn.Module):
    """MLP backbone ``64 -> 128 -> 64`` and projection head ``64 -> 32`` (SimCLR layout)."""

    def __init__(self, in_features: int = 64, hidden: int = 128, features: int = 64, projection: int = 32) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, features))
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(features, projection))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A random view of ``[b, 64]`` pixels: 20 % pixel dropout, +-10 % brightness, noise 0.05."""
    keep = torch.rand(x.shape, generator=generator) > 0.2
    scale = 1.0 + 0.2 * (torch.rand((x.shape[0], 1), generator=generator) - 0.5)
    return x * keep * scale + 0.05 * torch.randn(x.shape, generator=generator)


@torch.no_grad()
def knn_accuracy(features: torch.Tensor, labels: np.ndarray, k: int = 10) -> float:
    """Leave-one-out cosine kNN accuracy (``k`` votes) of ``[N, d]`` features with labels ``[N]``."""
    features = F.normalize(features, dim=1)
    similarity = features @ features.T
    similarity.fill_diagonal_(-2.0)
    votes = labels[similarity.topk(k, dim=1).indices.numpy()]
    counts = np.zeros((len(labels), int(labels.max()) + 1), dtype=np.int64)
    np.add.at(counts, (np.arange(len(labels))[:, None], votes), 1)
    return float((counts.argmax(axis=1) == labels).mean())


@dataclass
class TourSettings:
    """What the training part of the tour runs (the same for every sampler)."""

    epochs: int
    batch_size: int = 64
    k: int = 100
    m: int = 1000
    restart_prob: float = 0.2
    refresh_every: int = 10
    swap_delay: int = 16
    temperature: float = 0.5
    learning_rate: float = 1e-3
    seed: int = 0


def train(
    name: str,
    pixels: torch.Tensor,
    labels: np.ndarray,
    settings: TourSettings,
    *,
    run_name: str | None = None,
    progress: bool = True,
) -> tuple[SamplerMonitor, float]:
    """Train a fresh :class:`Encoder` with NT-Xent on batches from ``SAMPLERS[name]``.

    Every step feeds both views' projections back with ``sampler.update``; graph samplers
    rebuild every ``refresh_every`` batches in the background after one uniform warm-up epoch.
    Runs with the same ``settings.seed`` start from the same weights and view generator,
    whatever the sampler.
    ``run_name`` names the run in RUN.json (default: ``name``).

    Returns:
        The monitor (one record per epoch, metrics ``knn_accuracy`` and ``loss``; hardness in
        the projection space of the model at the end of each epoch) and the training seconds.
    """
    from tqdm.auto import tqdm

    torch.manual_seed(settings.seed)
    dataset = IndexedDataset(pixels)
    sampler = SAMPLERS[name](
        dataset, batch_size=settings.batch_size, k=settings.k, m=settings.m, restart_prob=settings.restart_prob,
        seed=settings.seed, refresh_every=settings.refresh_every, warmup_epochs=1, background=True,
        swap_delay=settings.swap_delay,
    )
    loader = DataLoader(dataset, batch_sampler=sampler)
    model = Encoder()
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.learning_rate)
    loss_fn = NTXentLoss(temperature=settings.temperature)
    views = torch.Generator().manual_seed(settings.seed)

    @torch.no_grad()
    def projections() -> torch.Tensor:
        return model(pixels)

    monitor = SamplerMonitor(sampler, name=run_name or name, labels=labels, embeddings_fn=projections)
    started = time.perf_counter()
    bar = tqdm(total=settings.epochs * len(sampler), desc=f"{run_name or name:>20}", unit="step", disable=not progress)
    try:
        for epoch in range(settings.epochs):
            total = 0.0
            monitor.on_epoch_start()
            for indices, x in loader:
                z1, z2 = model(augment(x, views)), model(augment(x, views))
                loss = loss_fn(z1, z2)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                # Both views' normalised projections, concatenated, as the authors' code stores them.
                bank_rows = torch.cat([F.normalize(z1.detach(), dim=1), F.normalize(z2.detach(), dim=1)], dim=1)
                sampler.update(indices, bank_rows)
                total += loss.item()
                monitor.on_batch(indices)
                bar.update()
            with torch.no_grad():
                accuracy = knn_accuracy(model.backbone(pixels), labels)
            monitor.on_epoch_end(epoch, metrics={"knn_accuracy": accuracy, "loss": total / len(sampler)})
            bar.set_postfix(loss=f"{total / len(sampler):.3f}", knn=f"{accuracy:.3f}")
    finally:
        bar.close()
        if hasattr(sampler, "close"):
            sampler.close()
    return monitor, time.perf_counter() - started


def summarize_run(monitor: SamplerMonitor, skip_epochs: int = 1) -> dict[str, Any]:
    """Table figures of one run: final accuracy; hardness and same-label share averaged over
    the epochs after ``skip_epochs`` (the warm-up, uniform for every sampler); sampler time."""
    records = monitor.records
    later = records[skip_epochs:] or records
    hardness = [r["hardness"]["mean"] for r in later if r["hardness"] is not None]
    same = [r["same_label_share"] for r in later if r["same_label_share"] is not None]
    sampler_seconds = sum(r["timing"]["sampler_seconds"] for r in records)
    step_seconds = sum(r["timing"]["step_seconds"] for r in records)
    return {
        "epochs": len(records),
        "steps": sum(r["steps"] for r in records),
        "knn_accuracy": records[-1]["metrics"]["knn_accuracy"],
        "hardness": float(np.mean(hardness)) if hardness else float("nan"),
        "same_label_share": float(np.mean(same)) if same else float("nan"),
        "sampler_seconds": sampler_seconds,
        "step_seconds": step_seconds,
        "sampler_share": sampler_seconds / step_seconds if step_seconds > 0 else float("nan"),
    }
