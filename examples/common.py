"""Shared pieces of the training-loop examples: data, encoder, augmentation, evaluation.

The data is scikit-learn's bundled digits (1797 images of 8x8 pixels, 10 classes), so the
examples run anywhere without a download, in seconds on a CPU. The model, augmentation and
dataset wrapper are the ones of ``batchsampler demo``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from batchsampler.cli._tour import Encoder, IndexedDataset, augment
from batchsampler.cli._tour import knn_accuracy as _feature_knn_accuracy
from batchsampler.cli._tour import load_digits_pixels as load_digits

__all__ = ["Encoder", "IndexedDataset", "augment", "bank_vectors", "knn_accuracy", "load_digits"]


def bank_vectors(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """What the sampler's bank stores: both views' normalised projections, concatenated (as the authors do)."""
    return torch.cat([F.normalize(z1.detach(), dim=1), F.normalize(z2.detach(), dim=1)], dim=1)


@torch.no_grad()
def knn_accuracy(model: Encoder, data: torch.Tensor, labels: np.ndarray, k: int = 10) -> float:
    """Leave-one-out cosine kNN accuracy of the frozen backbone features."""
    return _feature_knn_accuracy(model.backbone(data), labels, k)
