"""Evaluation of frozen image features: weighted kNN monitor and linear probe."""

from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["embed_images", "knn_monitor", "linear_probe"]


@torch.no_grad()
def embed_images(model: torch.nn.Module, images: torch.Tensor, *, batch_size: int = 512,
                 device: torch.device | str = "cpu") -> torch.Tensor:
    """Encoder features of un-augmented ``[N, C, H, W]`` images, in eval mode, on the CPU.

    ``model`` must have an ``embed`` method (:class:`~batchsampler.integrations.vision.model.SimCLRModel`).
    The model's train/eval mode is restored afterwards.

    Returns:
        float32 ``[N, d]``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    was_training = model.training
    model.eval()
    try:
        chunks = [model.embed(images[i:i + batch_size].to(device)).float().cpu() for i in range(0, len(images), batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(chunks)


@torch.no_grad()
def knn_monitor(
    train_features: torch.Tensor,
    train_labels: np.ndarray | torch.Tensor,
    test_features: torch.Tensor,
    test_labels: np.ndarray | torch.Tensor,
    *,
    k: int = 200,
    temperature: float = 0.1,
    chunk_size: int = 1024,
) -> float:
    """Weighted kNN accuracy (the InstDisc / SimCLR monitor, Wu et al. 2018).

    Each test point takes its ``k`` most cosine-similar training points; neighbour ``j`` votes
    for its class with weight ``exp(s_j / temperature)``; the class with the largest total wins.
    ``k`` is clipped to the number of training points.

    Args:
        train_features: ``[N, d]``; train_labels: ``[N]`` integers.
        test_features: ``[M, d]``; test_labels: ``[M]`` integers.
        k: neighbours (default 200); temperature: vote sharpness (default 0.1).
        chunk_size: test rows per similarity block (bounds memory at ``chunk_size x N``).

    Returns:
        Accuracy in ``[0, 1]``.

    Raises:
        ValueError: on ``k`` < 1, ``temperature`` <= 0, an empty set, or mismatched shapes.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    train_labels = torch.as_tensor(np.asarray(train_labels), dtype=torch.long)
    test_labels = torch.as_tensor(np.asarray(test_labels), dtype=torch.long)
    train_features, test_features = torch.as_tensor(train_features).float(), torch.as_tensor(test_features).float()
    if train_features.ndim != 2 or train_features.shape[0] != train_labels.shape[0] or train_features.shape[0] == 0:
        raise ValueError(f"train_features must be non-empty [N, d] with N = len(train_labels), "
                         f"got {tuple(train_features.shape)} and {tuple(train_labels.shape)}")
    if (test_features.ndim != 2 or test_features.shape[0] != test_labels.shape[0] or test_features.shape[0] == 0
            or test_features.shape[1] != train_features.shape[1]):
        raise ValueError(f"test_features must be non-empty [M, d] with M = len(test_labels) and the train d, "
                         f"got {tuple(test_features.shape)} and {tuple(test_labels.shape)}")
    k = min(k, train_features.shape[0])
    classes = int(max(train_labels.max(), test_labels.max())) + 1
    bank = F.normalize(train_features, dim=1)
    correct = 0
    for start in range(0, test_features.shape[0], chunk_size):
        queries = F.normalize(test_features[start:start + chunk_size], dim=1)
        similarity, neighbours = (queries @ bank.T).topk(k, dim=1)
        # Subtracting the row maximum leaves the argmax unchanged and keeps exp() finite.
        weights = ((similarity - similarity[:, :1]) / temperature).exp()
        votes = torch.zeros(queries.shape[0], classes).scatter_add_(1, train_labels[neighbours], weights)
        correct += int((votes.argmax(dim=1) == test_labels[start:start + chunk_size]).sum())
    return correct / test_features.shape[0]


def linear_probe(
    train_features: np.ndarray | torch.Tensor,
    train_labels: np.ndarray,
    test_features: np.ndarray | torch.Tensor,
    test_labels: np.ndarray,
    *,
    C: float = 1.0,
    max_iter: int = 1000,
) -> float:
    """Test accuracy of a multinomial logistic regression on standardised frozen features.

    One fixed ``C`` (no search), because the probe ranks samplers trained on the same data and
    features, and a cross-validated search would cost more than training on a CPU. On 5 000 x 64
    features L-BFGS takes about half a second on one core (but a minute when BLAS threads fight
    over busy cores: :func:`~batchsampler.integrations.vision.reproduce.main` caps them with ``--threads``).

    Args:
        train_features: ``[N, d]``; train_labels: ``[N]``.
        test_features: ``[M, d]``; test_labels: ``[M]``.
        C: inverse L2 strength (default 1.0).
        max_iter: L-BFGS iterations (default 1000).

    Raises:
        ValueError: on ``C`` <= 0, mismatched shapes, or fewer than two training classes.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if C <= 0:
        raise ValueError(f"C must be > 0, got {C}")
    x_train, x_test = np.asarray(train_features, dtype=np.float64), np.asarray(test_features, dtype=np.float64)
    y_train, y_test = np.asarray(train_labels), np.asarray(test_labels)
    if x_train.ndim != 2 or x_train.shape[0] != y_train.shape[0]:
        raise ValueError(f"train_features must be [N, d] with N = len(train_labels), got {x_train.shape}, {y_train.shape}")
    if x_test.ndim != 2 or x_test.shape[0] != y_test.shape[0] or x_test.shape[1] != x_train.shape[1]:
        raise ValueError(f"test_features must be [M, d] with the train d, got {x_test.shape}, {y_test.shape}")
    if len(np.unique(y_train)) < 2:
        raise ValueError("train_labels must contain at least two classes")
    model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter))
    with warnings.catch_warnings():
        # An iteration cap reached on near-separable features still gives a usable probe.
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x_train, y_train)
    return float(model.score(x_test, y_test))
