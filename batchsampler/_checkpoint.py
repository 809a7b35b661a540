"""Resumption: the sampler's O(1) state and its checkpoint files.

A checkpoint is one ``.npz`` file with arrays and a JSON ``meta`` entry, written atomically.
Reading is strict and has no side effects: :func:`read_checkpoint` and the ``_check_*``
methods return plain values after checking them, and the sampler applies them only once
everything has been checked (a rejected file or state leaves the sampler exactly as it was).
"""

from __future__ import annotations

import json
import numbers
import os
from typing import Any

import numpy as np

from ._io import load_npz, npz_path, save_npz

__all__ = ["CHECKPOINT_VERSION", "CheckpointMixin", "json_dumps", "read_checkpoint", "write_checkpoint"]

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


class CheckpointMixin:
    """Resumption of :class:`~batchsampler.base.BaseBatchSampler`: the O(1) state and checkpoints.

    Mixed into the base class only; it reads the sampler's epoch bookkeeping (``_resume``,
    ``_current_epoch``, ``_position``, ``_history``, ``_grown``, ``_restored_history``) and its
    bank. Subclasses extend it through the ``_extra_state`` / ``_check_extra_state`` /
    ``_apply_extra_state`` hooks (O(1) state) and ``_save_extra`` / ``_check_extra`` /
    ``_apply_extra`` (checkpoint files); every ``_check_*`` hook raises and changes nothing,
    every ``_apply_*`` hook applies what its check returned.
    """

    def state_dict(self) -> dict[str, Any]:
        """O(1) position of the sampler: epoch, batches yielded, seed and configuration.

        Works with torchdata's ``StatefulDataLoader``, which calls it after every dispatched
        batch. The position is that of the latest iteration, its end included: a state taken
        after the last batch of epoch ``e`` resumes with an empty iteration (the rest of
        epoch ``e``), then epoch ``e + 1``, as torch's own samplers do under
        ``StatefulDataLoader``. After :meth:`set_epoch` it is the start of the selected epoch.
        The graph and the bank are not part of it: persist them with :meth:`save`.
        """
        if self._resume is not None:
            epoch, position = self._resume
        elif self._current_epoch is not None:
            epoch, position = self._current_epoch, self._position
        else:
            epoch, position = self._next_epoch, 0
        return {
            "epoch": epoch,
            "position": position,
            "seed": self.seed,
            "num_instances": self.num_instances,
            "global_batch_size": self.global_batch_size,
            **self._extra_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from :meth:`state_dict`: the next iteration continues that epoch at that batch.

        Every field is checked before any is applied; a rejected state leaves the sampler as
        it was.

        Raises:
            TypeError: if ``state`` is not a dict.
            ValueError: on a missing field, a field of the wrong type or range, or a state of a
                sampler with another seed, size or batch size.
        """
        checked = self._check_state(state, "state")
        self._apply_state(checked, trusted=False)

    def _check_state(self, state: Any, where: str) -> dict[str, Any]:
        if not isinstance(state, dict):
            raise TypeError(f"{where} must be a dict from state_dict(), got {type(state).__name__}")
        for key in ("seed", "num_instances", "global_batch_size", "epoch", "position"):
            if key not in state:
                raise ValueError(f"{where} has no {key!r} field (not a state_dict() of {type(self).__name__})")
        for key in ("seed", "num_instances", "global_batch_size"):
            value = state[key]
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value != getattr(self, key):
                raise ValueError(f"{where} has {key}={value!r}, but this sampler has {key}={getattr(self, key)!r}")
        checked = {
            "epoch": _field_int(where, state, "epoch", low=0),
            "position": _field_int(where, state, "position", low=0, high=len(self)),
        }
        checked.update(self._check_extra_state(state, where))
        return checked

    def _apply_state(self, checked: dict[str, Any], *, trusted: bool) -> None:
        """Apply a checked state (``trusted``: it comes with the checkpoint being loaded)."""
        self._resume = (checked["epoch"], checked["position"])
        self._apply_extra_state(checked, trusted=trusted)

    def _extra_state(self) -> dict[str, Any]:
        return {}

    def _check_extra_state(self, state: dict[str, Any], where: str) -> dict[str, Any]:
        """Subclass fields of ``state``, checked (raise ``ValueError``/``TypeError``), not applied."""
        return {}

    def _apply_extra_state(self, checked: dict[str, Any], *, trusted: bool) -> None:
        pass

    def _resumes_from_checkpoint(self, epoch: int, position: int) -> bool:
        """True when a loaded checkpoint holds the batches of ``epoch`` up to ``position``."""
        restored = self._restored_history
        return restored is not None and restored[0] == epoch and len(restored[1]) >= position

    def save(self, path: str | os.PathLike) -> str:
        """Write a checkpoint: bank, graph, the current epoch's batches and the state.

        Together with the O(1) :meth:`state_dict` saved by the training loop (or torchdata's
        ``StatefulDataLoader``) at the same step, :meth:`load` resumes exactly: a run stopped
        mid-epoch continues with the batches the uninterrupted run would have yielded. A
        pending background build is waited for and saved too.

        The file is ``path``, with ``.npz`` appended unless it ends so (:meth:`load` resolves
        names the same way). It is written atomically: to a temporary file in the same
        directory, fsynced, then renamed over ``path``, so a crash mid-save leaves the previous
        checkpoint intact.

        Returns:
            The path written.

        Raises:
            RuntimeError: if a pending background build failed (as at its swap point).
        """
        arrays: dict[str, np.ndarray] = {}
        if self.bank.embeddings is not None:
            arrays["bank_embeddings"] = self.bank.numpy()  # a device bank is saved as NumPy
        arrays["bank_seen"] = self.bank.seen
        arrays["bank_last_update"] = self.bank.last_update
        pack_batches(arrays, "history", self._history)
        # Batches grown ahead with the current walk group: the uninterrupted run yields them
        # whatever happens to the graph meanwhile, so the resumed run must too.
        pack_batches(arrays, "grown", [self._grown[i] for i in sorted(self._grown)])
        meta = {
            "format_version": CHECKPOINT_VERSION,
            "class": type(self).__name__,
            "history_epoch": self._current_epoch,
            "grown_first": min(self._grown, default=None),
            "bank_updates": self.bank.updates,
            # The device type only ("cuda", not "cuda:1"): ranks and resumed runs may use others.
            "bank_device": None if self.bank.device is None else self.bank.device.type,
            "state": self.state_dict(),
        }
        self._save_extra(arrays, meta)
        return write_checkpoint(path, meta, arrays)

    def load(self, path: str | os.PathLike) -> None:
        """Restore a checkpoint written by :meth:`save` (call ``load_state_dict`` after it if the
        training loop saved its own, later-consumed position).

        The whole file is checked before anything is applied: a rejected checkpoint leaves the
        sampler exactly as it was. ``path`` resolves as in :meth:`save`.

        Raises:
            FileNotFoundError: if there is no such file.
            ValueError: if the file is empty, truncated or not a checkpoint of this class (a
                saved graph, say), or belongs to a sampler with another size, batch size or
                seed, or holds inconsistent batches (indices out of range, repeated within an
                epoch, sizes that do not match the batch size).
        """
        meta, data, where = read_checkpoint(path, type(self).__name__)
        state = self._check_state(meta.get("state"), f"{where}: state")
        bank = self.bank.check_restore(
            data.get("bank_embeddings"), data.get("bank_seen"), data.get("bank_last_update"),
            meta.get("bank_updates"), where,
        )
        history_epoch = meta_int(meta, "history_epoch", where, optional=True)
        history = unpack_batches(data, "history", self.num_instances, where)
        grown = unpack_batches(data, "grown", self.num_instances, where)
        grown_first = meta_int(meta, "grown_first", where, optional=True)
        self._check_history(history, grown, grown_first, history_epoch, state, where)
        extra = self._check_extra(data, meta, where)
        # Everything is checked: apply.
        self.bank.restore(bank, device_type=meta.get("bank_device"))  # to the sampler's device
        self._apply_extra(extra)
        self._apply_state(state, trusted=True)
        self._restored_history = None
        if history_epoch is not None:
            self._restored_history = (history_epoch, history, dict(enumerate(grown, start=grown_first or 0)))

    def _check_history(
        self,
        history: list[list[int]],
        grown: list[list[int]],
        grown_first: int | None,
        history_epoch: int | None,
        state: dict[str, Any],
        where: str,
    ) -> None:
        """Check a checkpoint's batches as strictly as the sampler would have produced them."""
        total = len(self)
        if history_epoch is None and (history or grown):
            raise ValueError(f"{where}: batches are stored without the epoch they belong to")
        if len(history) + len(grown) > total:
            raise ValueError(f"{where}: {len(history) + len(grown)} batches stored, but an epoch has {total}")
        if grown and (self.replacement or grown_first != len(history)):
            raise ValueError(f"{where}: the batches grown ahead do not follow the batches produced")
        if history_epoch == state["epoch"] and len(history) < state["position"] < total:
            raise ValueError(
                f"{where}: the state is at batch {state['position']} of epoch {history_epoch}, "
                f"but only {len(history)} batches of it are stored"
            )
        taken = np.zeros(self.num_instances, dtype=bool)
        for index, batch in enumerate([*history, *grown]):
            padded = index < len(history)
            size = self.global_batch_size if self.replacement else self._batch_size_at(index)
            pad = (-size) % self.dist.world_size if padded else 0
            if len(batch) != size + pad:
                raise ValueError(
                    f"{where}: batch {index} has {len(batch)} indices, expected {size + pad} "
                    f"(batch_size {self.batch_size} x world size {self.dist.world_size})"
                )
            own = np.asarray(batch[:size], dtype=np.int64)
            if pad and batch[size:] != history[0][:pad]:
                raise ValueError(f"{where}: the padding of batch {index} is not taken from the first batch")
            if self.replacement:
                taken[:] = False
            if np.unique(own).size != own.size or taken[own].any():
                scope = "batch" if self.replacement else "epoch"
                raise ValueError(f"{where}: batch {index} repeats an index within its {scope}")
            taken[own] = True

    def _save_extra(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        """Hook: add subclass arrays and metadata to a checkpoint."""

    def _check_extra(self, data: dict[str, np.ndarray], meta: dict[str, Any], where: str) -> Any:
        """Hook: check the subclass part of a checkpoint (raise ``ValueError``), apply nothing."""
        return None

    def _apply_extra(self, checked: Any) -> None:
        """Hook: apply what :meth:`_check_extra` returned."""



def _field_int(where: str, state: dict[str, Any], key: str, *, low: int = 0, high: int | None = None) -> int:
    """``state[key]`` as an int in ``[low, high]``, or a ``ValueError`` naming the field."""
    value = state[key]
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{where} field {key!r} must be an integer, got {type(value).__name__} ({value!r})")
    if value < low or (high is not None and value > high):
        bounds = f"[{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"{where} field {key!r} must be {bounds}, got {value}")
    return int(value)
