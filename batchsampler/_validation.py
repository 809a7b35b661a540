"""Argument checks shared by the public API.

Every check raises before any work is done, with a message that names the offending argument,
so that a mistake in a training script fails at construction time rather than mid-epoch.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np


def check_int(name: str, value: Any, *, low: int | None = None, high: int | None = None) -> int:
    """Return ``value`` as ``int`` if it is an integer within ``[low, high]``.

    Raises:
        TypeError: if ``value`` is not an integer (``bool`` is rejected too).
        ValueError: if ``value`` is outside the bounds.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} ({value!r})")
    value = int(value)
    if low is not None and value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    if high is not None and value > high:
        raise ValueError(f"{name} must be <= {high}, got {value}")
    return value


def check_probability(name: str, value: Any) -> float:
    """Return ``value`` as ``float`` if it is a real number in ``[0, 1]``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} ({value!r})")
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")
    return value


def to_numpy_2d(name: str, array: Any) -> np.ndarray:
    """Convert a torch tensor or array-like to a finite 2-D float NumPy array.

    Torch tensors are detached and moved to the CPU; low-precision floats (float16, bfloat16)
    are widened to float32 because NumPy has no bfloat16.

    Raises:
        TypeError: if ``array`` is not numeric.
        ValueError: if it is not 2-D, is empty, or holds NaN or infinite values.
    """
    if _is_torch_tensor(array):
        import torch

        tensor = array.detach()
        if tensor.is_floating_point() and tensor.dtype not in (torch.float32, torch.float64):
            tensor = tensor.float()
        array = tensor.cpu().numpy()
    array = np.asarray(array)
    if array.dtype == object or not (
        np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)
    ):
        raise TypeError(f"{name} must be a numeric array, got dtype {array.dtype}")
    if array.ndim != 2:
        raise ValueError(f"{name} must be 2-D [num_rows, dim], got shape {array.shape}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"{name} must be non-empty, got shape {array.shape}")
    # min and max propagate NaN and expose infinities without an N x d boolean temporary
    # (1.3 GB at ten million rows of 128 floats).
    if np.issubdtype(array.dtype, np.floating) and not (np.isfinite(array.min()) and np.isfinite(array.max())):
        raise ValueError(f"{name} contains NaN or infinite values")
    return array


def to_index_array(name: str, indices: Any, num_instances: int) -> np.ndarray:
    """Convert ``indices`` (tensor, array or sequence of ints) to a 1-D int64 array in range.

    Raises:
        TypeError: if the values are not integers.
        ValueError: if the array is not 1-D or holds values outside ``[0, num_instances)``.
    """
    if _is_torch_tensor(indices):
        indices = indices.detach().cpu().numpy()
    indices = np.asarray(indices)
    if indices.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {indices.shape}")
    if indices.size and not np.issubdtype(indices.dtype, np.integer):
        raise TypeError(f"{name} must hold integers, got dtype {indices.dtype}")
    indices = indices.astype(np.int64, copy=False)
    if indices.size and (indices.min() < 0 or indices.max() >= num_instances):
        bad = indices[(indices < 0) | (indices >= num_instances)][0]
        raise ValueError(
            f"{name} must lie in [0, {num_instances}), got {int(bad)} "
            f"(min {int(indices.min())}, max {int(indices.max())})"
        )
    return indices


def num_instances_of(name: str, data: Any) -> int:
    """The number of instances of ``data``: an ``int`` itself, or ``len(data)`` for a dataset."""
    if isinstance(data, numbers.Integral) and not isinstance(data, bool):
        return check_int(name, data, low=1)
    if hasattr(data, "__len__"):
        return check_int(f"len({name})", len(data), low=1)
    raise TypeError(
        f"{name} must be the number of instances (int) or a sized dataset, "
        f"got {type(data).__name__}"
    )


def _is_torch_tensor(value: Any) -> bool:
    # Checked by name so that importing this module does not import torch.
    return type(value).__module__.startswith("torch") and hasattr(value, "detach")
