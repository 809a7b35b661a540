"""Argument checks shared by the losses.

Every check raises before any tensor work, with a message that names the
offending argument: ``TypeError`` for a wrong type or dtype, ``ValueError`` for
a wrong value or shape.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import torch
from torch import Tensor

__all__ = ["check_choice", "check_labels", "check_neg_mask", "check_range", "check_views"]


def check_range(
    name: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Return ``float(value)`` after checking it is a finite real in the interval.

    Raises
    ------
    TypeError
        If ``value`` is not a real number (``bool`` is rejected too).
    ValueError
        If ``value`` is not finite or lies outside the interval; the message
        names ``name`` and the interval.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    v = float(value)
    lo = "-inf" if low is None else f"{low:g}"
    hi = "inf" if high is None else f"{high:g}"
    interval = f"{'(' if low_open or low is None else '['}{lo}, {hi}{')' if high_open or high is None else ']'}"
    bad_low = low is not None and (v <= low if low_open else v < low)
    bad_high = high is not None and (v >= high if high_open else v > high)
    if not math.isfinite(v) or bad_low or bad_high:
        raise ValueError(f"{name} must be a finite number in {interval}, got {value!r}")
    return v


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    """Return ``value`` if it is one of ``choices``, else raise ``ValueError``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def _check_embedding(name: str, z: Any) -> Tensor:
    if not isinstance(z, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(z).__name__}")
    if not z.is_floating_point():
        raise TypeError(f"{name} must have a floating-point dtype, got {z.dtype}")
    if z.dim() != 2:
        raise ValueError(f"{name} must be 2-D with shape [B, d], got shape {tuple(z.shape)}")
    return z


def check_views(z1: Any, z2: Any, names: tuple[str, str] = ("z1", "z2")) -> tuple[Tensor, Tensor]:
    """Check two views ``[B, d]``: tensors, floating, 2-D, same shape and device, ``B >= 2``.

    Raises
    ------
    TypeError
        Not a tensor or not a floating-point dtype.
    ValueError
        Wrong rank, shape mismatch, different devices, ``B < 2`` or ``d < 1``.
    """
    a, b = names
    z1 = _check_embedding(a, z1)
    z2 = _check_embedding(b, z2)
    if z1.shape != z2.shape:
        raise ValueError(f"{a} and {b} must have the same shape [B, d], got {tuple(z1.shape)} and {tuple(z2.shape)}")
    if z1.device != z2.device:
        raise ValueError(f"{a} and {b} must be on the same device, got {z1.device} and {z2.device}")
    if z1.shape[0] < 2:
        raise ValueError(f"batch size B (dim 0 of {a}, {b}) must be >= 2 to have negatives, got {z1.shape[0]}")
    if z1.shape[1] < 1:
        raise ValueError(f"embedding dimension d (dim 1 of {a}, {b}) must be >= 1, got {z1.shape[1]}")
    return z1, z2


def check_labels(labels: Any, batch_size: int, device: torch.device) -> Tensor:
    """Check integer ``labels`` of shape ``[B]`` and move them to ``device``."""
    if not isinstance(labels, Tensor):
        raise TypeError(f"labels must be a torch.Tensor, got {type(labels).__name__}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise TypeError(f"labels must have an integer dtype, got {labels.dtype}")
    if tuple(labels.shape) != (batch_size,):
        raise ValueError(f"labels must have shape (B,) = ({batch_size},), got {tuple(labels.shape)}")
    return labels.to(device)


def check_neg_mask(neg_mask: Any, batch_size: int, device: torch.device) -> Tensor:
    """Check a bool ``neg_mask`` (``[2B, 2B]`` or instance-level ``[B, B]``); return it as ``[2B, 2B]``."""
    if not isinstance(neg_mask, Tensor):
        raise TypeError(f"neg_mask must be a torch.Tensor, got {type(neg_mask).__name__}")
    if neg_mask.dtype != torch.bool:
        raise TypeError(f"neg_mask must have dtype torch.bool (True = usable negative), got {neg_mask.dtype}")
    shape, n = tuple(neg_mask.shape), 2 * batch_size
    if shape == (batch_size, batch_size):
        # an instance-level mask applies to both views of each instance
        neg_mask = neg_mask.repeat(2, 2)
    elif shape != (n, n):
        raise ValueError(
            f"neg_mask must have shape [2B, 2B] = ({n}, {n}) or [B, B] = ({batch_size}, {batch_size}), got {shape}"
        )
    return neg_mask.to(device)
