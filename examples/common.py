"""Shared pieces of the training-loop examples: data, encoder, augmentation, evaluation.

The data is scikit-learn's bundled digits (1797 images of 8x8 pixels, 10 classes), so the
examples run anywhere without a download, in seconds on a CPU.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset


class IndexedDataset(Dataset):
    """Wraps a tensor ``[N, ...]``; items are ``(index, sample)`` so the loop can call ``update``."""

    def __init__(self, data: torch.Tensor) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor]:
        return index, self.data[index]


def load_digits() -> tuple[torch.Tensor, np.ndarray]:
    """Pixels ``[1797, 64]`` float32 in ``[0, 1]`` and labels ``[1797]``."""
    from sklearn.datasets import load_digits as sklearn_digits

    pixels, labels = sklearn_digits(return_X_y=True)
    return torch.tensor(pixels / 16.0, dtype=torch.float32), labels


class Encoder(nn.Module):
    """A small MLP encoder with a projection head (SimCLR layout)."""

    def __init__(self, in_features: int = 64, hidden: int = 128, features: int = 64, projection: int = 32) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, features))
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(features, projection))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A random view: pixel dropout, brightness jitter and Gaussian noise."""
    keep = torch.rand(x.shape, generator=generator) > 0.2
    scale = 1.0 + 0.2 * (torch.rand((x.shape[0], 1), generator=generator) - 0.5)
    return x * keep * scale + 0.05 * torch.randn(x.shape, generator=generator)


def bank_vectors(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """What the sampler's bank stores: both views' normalised projections, concatenated (as the authors do)."""
    return torch.cat([F.normalize(z1.detach(), dim=1), F.normalize(z2.detach(), dim=1)], dim=1)


@torch.no_grad()
def knn_accuracy(model: Encoder, data: torch.Tensor, labels: np.ndarray, k: int = 10) -> float:
    """Leave-one-out cosine kNN accuracy of the frozen backbone features."""
    features = F.normalize(model.backbone(data), dim=1)
    similarity = features @ features.T
    similarity.fill_diagonal_(-2.0)
    neighbours = similarity.topk(k, dim=1).indices.numpy()
    votes = labels[neighbours]
    predicted = np.array([np.bincount(row, minlength=labels.max() + 1).argmax() for row in votes])
    return float((predicted == labels).mean())
