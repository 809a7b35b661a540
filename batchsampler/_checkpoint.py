"""The sampler checkpoint format: one ``.npz`` file with arrays and a JSON ``meta`` entry.

Reading is strict and has no side effects: :func:`read_checkpoint` returns plain values after
checking the file, and the sampler applies them only once everything has been checked (a
rejected file leaves the sampler exactly as it was).
"""

from __future__ import annotations

import json
import numbers
import os
from typing import Any

import numpy as np

from ._io import load_npz, npz_path, save_npz

__all__ = ["CHECKPOINT_VERSION", "json_dumps", "pack_batches", "read_checkpoint", "unpack_batches", "write_checkpoint"]

CHECKPOINT_VERSION = 1


def _json_default(value: Any) -> Any:
    # NumPy scalars reach the metadata through user arguments (seed=np.int64(0), index_params).
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (tuple, set, frozenset)):
        return list(value)
    raise TypeError(f"{type(value).__name__} ({value!r}) cannot be stored in a checkpoint's metadata")


def json_dumps(meta: dict[str, Any]) -> str:
    """``meta`` as JSON, NumPy scalars and arrays converted to Python values."""
    return json.dumps(meta, default=_json_default, allow_nan=True)


def pack_batches(arrays: dict[str, np.ndarray], name: str, batches: list[list[int]]) -> None:
    """Store ``batches`` as ``{name}_indices`` (int64, concatenated) and ``{name}_offsets``."""
    lengths = [len(batch) for batch in batches]
    arrays[f"{name}_indices"] = np.asarray([i for batch in batches for i in batch], dtype=np.int64)
    arrays[f"{name}_offsets"] = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)


def unpack_batches(data: dict[str, np.ndarray], name: str, num_instances: int, where: str) -> list[list[int]]:
    """The batches :func:`pack_batches` stored, checked: offsets non-decreasing from 0 to the
    number of indices, every index an integer in ``[0, num_instances)``.

    Raises:
        ValueError: naming ``where`` (the file) and what is wrong.
    """
    if f"{name}_offsets" not in data or f"{name}_indices" not in data:
        raise ValueError(f"{where}: {name} batches are missing")
    offsets, indices = np.asarray(data[f"{name}_offsets"]), np.asarray(data[f"{name}_indices"])
    if offsets.ndim != 1 or indices.ndim != 1 or not np.issubdtype(offsets.dtype, np.integer) or (
        indices.size and not np.issubdtype(indices.dtype, np.integer)
    ):
        raise ValueError(f"{where}: {name} batches must be 1-D integer arrays")
    if offsets.size < 1 or offsets[0] != 0 or offsets[-1] != indices.size or np.any(np.diff(offsets) < 1):
        raise ValueError(f"{where}: {name} batch offsets are inconsistent (batches must be non-empty)")
    if indices.size and (indices.min() < 0 or indices.max() >= num_instances):
        raise ValueError(
            f"{where}: {name} batches hold indices outside [0, {num_instances}) "
            f"(min {int(indices.min())}, max {int(indices.max())})"
        )
    values, bounds = indices.tolist(), offsets.tolist()
    return [values[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def write_checkpoint(path: str | os.PathLike, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> str:
    """Write the checkpoint atomically (temporary file, fsync, rename); returns the path written."""
    return save_npz(path, meta=np.array(json_dumps(meta)), **arrays)


def read_checkpoint(path: str | os.PathLike, class_name: str) -> tuple[dict[str, Any], dict[str, np.ndarray], str]:
    """``(meta, arrays, where)`` of the ``class_name`` checkpoint at ``path`` (``where``: the file,
    for messages).

    Raises:
        FileNotFoundError: if there is no such file.
        ValueError: if the file is empty, truncated, not an ``.npz``, a saved graph, another
            format version or another sampler class.
    """
    what = f"a {class_name} checkpoint"
    data = load_npz(path, what)
    where = repr(npz_path(path))
    if "meta" not in data or "bank_seen" not in data:
        kind = "a saved ProximityGraph" if "indptr" in data else "an .npz file without checkpoint contents"
        raise ValueError(f"{where} is {kind}, expected {what} (written by {class_name}.save)")
    try:
        meta = json.loads(str(data.pop("meta")))
    except json.JSONDecodeError as error:
        raise ValueError(f"{where} is not {what}: its metadata is not valid JSON ({error})") from error
    if not isinstance(meta, dict):
        raise ValueError(f"{where} is not {what}: its metadata is not a JSON object")
    if meta.get("format_version") != CHECKPOINT_VERSION:
        raise ValueError(
            f"{where} has checkpoint format version {meta.get('format_version')!r}, expected {CHECKPOINT_VERSION}"
        )
    if meta.get("class") != class_name:
        raise ValueError(f"{where} is a {meta.get('class')!r} checkpoint, expected {what}")
    return meta, data, where


def meta_int(meta: dict[str, Any], key: str, where: str, *, low: int = 0, optional: bool = False) -> int | None:
    """``meta[key]`` checked to be an int ``>= low`` (or ``None`` when ``optional``)."""
    if key not in meta:
        raise ValueError(f"{where}: metadata field {key!r} is missing")
    value = meta[key]
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{where}: metadata field {key!r} must be an integer >= {low}, got {value!r}")
    return int(value)
