"""SimCLR augmentations as batched tensor operations (no torchvision, no kornia).

Random resized crop and horizontal flip are one ``affine_grid`` + ``grid_sample`` call for the
whole batch; colour jitter and grayscale are per-image scalars broadcast over the batch. All
random parameters are drawn on the CPU from an explicit :class:`torch.Generator` and moved to
the images' device, so a seed gives the same views on CPU and GPU and the global RNG is never
touched. Plain torch rather than kornia.augmentation: the full pipeline on one (busy) CPU
thread, batch 256, median of 15 calls, took 8.5 ms (1 x 28 x 28) and 30 ms (3 x 32 x 32) here
versus 21 ms and 64 ms with the equivalent kornia pipeline, which also draws from the global RNG
only.

Differences from torchvision's SimCLR pipeline, chosen deliberately:

* The crop box is drawn once (area in ``crop_scale``, log-uniform aspect ratio) and its sides
  clipped to the image, instead of torchvision's 10 rejection tries; clipped boxes are slightly
  less elongated.
* Colour jitter applies brightness, contrast, saturation, hue in that fixed order rather than a
  random permutation; hue is a rotation of the chroma plane in YIQ space (a linear map), a close
  and cheap stand-in for the HSV round trip. Saturation, hue and grayscale are identities on
  single-channel images, as in torchvision.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["AugmentConfig", "color_jitter", "random_grayscale", "random_resized_crop", "simclr_view"]

# ITU-R 601 luma weights (torchvision's rgb_to_grayscale).
_LUMA = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class AugmentConfig:
    """SimCLR view parameters (defaults: SimCLR's CIFAR settings, crop scale as in small-image
    SimCLR reimplementations, since 8 % crops of 28 px images keep too little)."""

    crop_scale: tuple[float, float] = (0.2, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_prob: float = 0.5
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    jitter_prob: float = 0.8
    grayscale_prob: float = 0.2

    def __post_init__(self) -> None:
        low, high = self.crop_scale
        if not 0 < low <= high <= 1:
            raise ValueError(f"crop_scale must satisfy 0 < low <= high <= 1, got {self.crop_scale}")
        if not 0 < self.crop_ratio[0] <= self.crop_ratio[1]:
            raise ValueError(f"crop_ratio must satisfy 0 < low <= high, got {self.crop_ratio}")
        for name in ("flip_prob", "jitter_prob", "grayscale_prob"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        for name in ("brightness", "contrast", "saturation"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if not 0 <= self.hue <= 0.5:
            raise ValueError(f"hue must be in [0, 0.5], got {self.hue}")


def simclr_view(images: torch.Tensor, generator: torch.Generator, config: AugmentConfig = AugmentConfig()) -> torch.Tensor:
    """One random SimCLR view of every image of the batch.

    Args:
        images: float ``[B, C, H, W]`` in ``[0, 1]``, ``C`` in {1, 3}, on any device.
        generator: a CPU generator; every random parameter comes from it.
        config: the view parameters.

    Returns:
        ``[B, C, H, W]`` in ``[0, 1]``, same device and dtype.

    Raises:
        ValueError: on another shape or channel count.
    """
    _check(images)
    views = random_resized_crop(images, generator, config.crop_scale, config.crop_ratio, config.flip_prob)
    views = color_jitter(views, generator, config.brightness, config.contrast, config.saturation, config.hue,
                         config.jitter_prob)
    return random_grayscale(views, generator, config.grayscale_prob)


def random_resized_crop(
    images: torch.Tensor,
    generator: torch.Generator,
    scale: tuple[float, float] = (0.2, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    flip_prob: float = 0.5,
) -> torch.Tensor:
    """Crop a random box of each image (area share in ``scale``, aspect ratio in ``ratio``),
    resize it bilinearly to the input size, and mirror it horizontally with ``flip_prob``.

    Shapes: ``[B, C, H, W]`` -> ``[B, C, H, W]``.
    """
    _check(images)
    b = images.shape[0]
    area = _uniform(b, *scale, generator)
    aspect = torch.exp(_uniform(b, math.log(ratio[0]), math.log(ratio[1]), generator))
    # Half-sides in normalised coordinates, where the whole image spans [-1, 1].
    width = torch.sqrt(area * aspect).clamp(max=1.0)
    height = torch.sqrt(area / aspect).clamp(max=1.0)
    centre_x = _uniform(b, -1, 1, generator) * (1 - width)
    centre_y = _uniform(b, -1, 1, generator) * (1 - height)
    flip = torch.where(torch.rand(b, generator=generator) < flip_prob, -1.0, 1.0)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = width * flip, centre_x
    theta[:, 1, 1], theta[:, 1, 2] = height, centre_y
    theta = theta.to(device=images.device, dtype=images.dtype)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    # Border padding only matters for sampling points half a pixel outside the box edge.
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def color_jitter(
    images: torch.Tensor,
    generator: torch.Generator,
    brightness: float = 0.4,
    contrast: float = 0.4,
    saturation: float = 0.4,
    hue: float = 0.1,
    prob: float = 0.8,
) -> torch.Tensor:
    """Random brightness, contrast, saturation and hue changes, applied to each image with
    probability ``prob``; factors uniform in ``[1 - s, 1 + s]``, hue shift in ``[-hue, hue]``
    turns. Shapes: ``[B, C, H, W]`` -> ``[B, C, H, W]``, clamped to ``[0, 1]``."""
    _check(images)
    b, channels = images.shape[:2]
    apply = torch.rand(b, generator=generator) < prob

    def factor(strength: float) -> torch.Tensor:
        # Images that are not jittered get the identity factor 1.
        drawn = _uniform(b, 1 - strength, 1 + strength, generator)
        return torch.where(apply, drawn, torch.ones(b)).to(images.device, images.dtype).view(b, 1, 1, 1)

    brightness_f, contrast_f, saturation_f = factor(brightness), factor(contrast), factor(saturation)
    shift = torch.where(apply, _uniform(b, -hue, hue, generator), torch.zeros(b))
    out = (images * brightness_f).clamp(0, 1)
    mean = _gray(out).mean(dim=(1, 2, 3), keepdim=True)
    out = (mean + contrast_f * (out - mean)).clamp(0, 1)
    if channels == 3:
        gray = _gray(out)
        out = (gray + saturation_f * (out - gray)).clamp(0, 1)
        out = _rotate_hue(out, shift.to(images.device, images.dtype))
    return out


def random_grayscale(images: torch.Tensor, generator: torch.Generator, prob: float = 0.2) -> torch.Tensor:
    """Replace each RGB image by its luma (kept 3-channel) with probability ``prob``; identity on
    single-channel images (the draw still happens, so views do not depend on the channel count)."""
    _check(images)
    apply = (torch.rand(images.shape[0], generator=generator) < prob).to(images.device).view(-1, 1, 1, 1)
    if images.shape[1] == 1:
        return images
    return torch.where(apply, _gray(images).expand_as(images), images)


def _rotate_hue(images: torch.Tensor, turns: torch.Tensor) -> torch.Tensor:
    """Rotate the (I, Q) chroma of ``[B, 3, H, W]`` RGB images by ``turns`` x 360 degrees."""
    to_yiq = images.new_tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
    from_yiq = torch.linalg.inv(to_yiq)
    angle = 2 * math.pi * turns
    cos, sin = torch.cos(angle), torch.sin(angle)
    rotation = torch.zeros(images.shape[0], 3, 3, device=images.device, dtype=images.dtype)
    rotation[:, 0, 0] = 1
    rotation[:, 1, 1], rotation[:, 1, 2], rotation[:, 2, 1], rotation[:, 2, 2] = cos, -sin, sin, cos
    matrix = from_yiq @ rotation @ to_yiq  # [B, 3, 3]
    return torch.einsum("bij,bjhw->bihw", matrix, images).clamp(0, 1)


def _gray(images: torch.Tensor) -> torch.Tensor:
    if images.shape[1] == 1:
        return images
    weights = images.new_tensor(_LUMA).view(1, 3, 1, 1)
    return (images * weights).sum(dim=1, keepdim=True)


def _uniform(n: int, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator)


def _check(images: torch.Tensor) -> None:
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be [B, C, H, W] with C in (1, 3), got {tuple(images.shape)}")
