"""A small ResNet for 28-32 px images and the SimCLR projection head."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["BasicBlock", "SimCLRModel", "SmallResNet"]


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and an identity (or 1x1 projection) shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                                          nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class SmallResNet(nn.Module):
    """ResNet-18 layout for small images: 3x3 stride-1 stem and no max-pool (SimCLR's CIFAR
    variant), four stages of ``blocks`` basic blocks at widths ``width * (1, 2, 4, 8)``, global
    average pooling.

    Args:
        in_channels: image channels (1 or 3).
        width: channels of the first stage (ResNet-18: 64; 16 keeps CPU runs feasible).
        blocks: blocks per stage (ResNet-18: ``(2, 2, 2, 2)``; ``(1, 1, 1, 1)`` is ResNet-10).

    Shapes: ``[B, in_channels, H, W]`` -> ``[B, 8 * width]`` (:attr:`out_features`).

    Raises:
        ValueError: on ``width`` < 1 or a ``blocks`` entry < 1.
    """

    def __init__(self, in_channels: int = 3, width: int = 64, blocks: Sequence[int] = (2, 2, 2, 2)) -> None:
        super().__init__()
        if width < 1 or not blocks or min(blocks) < 1:
            raise ValueError(f"width and every blocks entry must be >= 1, got width={width}, blocks={blocks}")
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        stages, channels = [], width
        for stage, count in enumerate(blocks):
            out_channels = width * 2**stage
            layers = [BasicBlock(channels, out_channels, stride=1 if stage == 0 else 2)]
            layers += [BasicBlock(out_channels, out_channels) for _ in range(count - 1)]
            stages.append(nn.Sequential(*layers))
            channels = out_channels
        self.stages = nn.Sequential(*stages)
        self.out_features = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x)).mean(dim=(2, 3))


class SimCLRModel(nn.Module):
    """Encoder + SimCLR projection head (Linear-BN-ReLU-Linear), inputs normalised inside.

    Images go in as ``[0, 1]`` pixels; per-channel ``mean`` and ``std`` (of the training set)
    are buffers, so augmentation, the kNN monitor and the linear probe all feed raw pixels.

    Args:
        in_channels: image channels.
        width, blocks: see :class:`SmallResNet`.
        projection_dim: output size of the head (SimCLR: 128).
        mean, std: per-channel statistics, length ``in_channels`` (default 0.5 / 0.25).

    Raises:
        ValueError: on ``projection_dim`` < 1 or ``mean``/``std`` of the wrong length or a
            non-positive ``std``.
    """

    def __init__(
        self,
        in_channels: int = 3,
        width: int = 64,
        blocks: Sequence[int] = (2, 2, 2, 2),
        projection_dim: int = 128,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        if projection_dim < 1:
            raise ValueError(f"projection_dim must be >= 1, got {projection_dim}")
        mean = torch.tensor(mean if mean is not None else [0.5] * in_channels, dtype=torch.float32)
        std = torch.tensor(std if std is not None else [0.25] * in_channels, dtype=torch.float32)
        if mean.shape != (in_channels,) or std.shape != (in_channels,) or (std <= 0).any():
            raise ValueError(f"mean and std must have {in_channels} entries and std > 0, got {mean}, {std}")
        self.register_buffer("mean", mean.view(1, -1, 1, 1))
        self.register_buffer("std", std.view(1, -1, 1, 1))
        self.encoder = SmallResNet(in_channels, width, blocks)
        features = self.encoder.out_features
        self.head = nn.Sequential(nn.Linear(features, features, bias=False), nn.BatchNorm1d(features), nn.ReLU(),
                                  nn.Linear(features, projection_dim))

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Encoder features ``[B, 8 * width]`` (what the kNN monitor and linear probe use)."""
        return self.encoder((images - self.mean) / self.std)

    def encode_and_project(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder features ``[B, 8 * width]`` and projections ``[B, projection_dim]`` of one
        forward pass: the projections are ``forward(images)``, computed from those features,
        so gradients through either are those of :meth:`forward` (the training loop uses the
        projections for the loss and either for the sampler's bank)."""
        features = self.embed(images)
        return features, self.head(features)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Projections ``[B, projection_dim]`` (what the loss uses)."""
        return self.head(self.embed(images))
