"""The embedding bank: the latest embedding of every instance, filled during training.

It lives on the CPU as a NumPy array, or on an accelerator as a torch tensor (``device``), so
that a GPU training loop feeds it without a host round trip and the graph is built there.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._validation import _is_torch_tensor, check_int, to_index_array, to_numpy_2d

__all__ = ["EmbeddingBank"]


def _torch_storage(device: Any) -> bool:
    """Whether a bank on ``device`` (a ``torch.device``) stores a torch tensor: off the CPU only.

    On the CPU the bank is a NumPy array and builds take the NumPy path, exactly as without a
    device. (Tests replace this function to run the tensor bank on CPU tensors.)
    """
    return device.type != "cpu"


class EmbeddingBank:
    """Latest embedding per instance, plus which instances have been seen at all.

    Storage is allocated at the first :meth:`update`, when the dimension is known.

    Args:
        num_instances: ``N``, the number of rows.
        dtype: storage dtype, ``numpy.float32`` (default) or ``numpy.float16`` (half the memory).
        device: where the rows live. ``None`` (default): decided by the first :meth:`update`,
            the device of its tensor (the CPU for arrays and CPU tensors). ``"cpu"``: a NumPy
            array. A CUDA device (``"cuda"``, ``"cuda:1"``, a ``torch.device``): a torch tensor
            of ``dtype`` on that device; updates stay there and :meth:`snapshot` copies there.

    Attributes:
        embeddings: ``[N, d]`` array of ``dtype`` (``None`` before the first update), or a
            torch tensor on :attr:`device` for a device bank (:meth:`numpy` gives a NumPy copy
            either way, :meth:`host_float32` float32 host rows kept current); rows never
            updated are zero and flagged False in :attr:`seen`.
        device: the ``torch.device`` of the rows (``None`` until the first update decides).
        seen: bool ``[N]``, True for rows written at least once.
        updates: number of :meth:`update` calls so far (the bank's clock).
        last_update: int64 ``[N]``, the clock value when each row was last written (-1: never).
    """

    def __init__(self, num_instances: int, dtype: Any = np.float32, device: Any = None) -> None:
        self.num_instances = check_int("num_instances", num_instances, low=1)
        dtype = np.dtype(dtype)
        if dtype not in (np.float32, np.float16):
            raise ValueError(f"dtype must be float32 or float16, got {dtype}")
        self.dtype = dtype
        self.device = None
        # The float32 host mirror of host_float32() (None until first asked for), and the rows
        # written since it was last brought up to date.
        self._mirror: np.ndarray | None = None
        self._stale_rows: np.ndarray | None = None
        if device is not None:
            from ._torch_build import resolve_device

            self.device = _concrete(resolve_device(device))
        self.embeddings: Any = None
        self.seen = np.zeros(self.num_instances, dtype=bool)
        self.updates = 0
        self.last_update = np.full(self.num_instances, -1, dtype=np.int64)

    @property
    def dim(self) -> int | None:
        """Embedding dimension ``d`` (``None`` before the first update)."""
        return None if self.embeddings is None else self.embeddings.shape[1]

    @property
    def num_seen(self) -> int:
        """Number of rows written at least once."""
        return int(self.seen.sum())

    @property
    def on_device(self) -> bool:
        """True when the rows are a torch tensor on :attr:`device` (not a NumPy array)."""
        return self.device is not None and _torch_storage(self.device)

    @property
    def build_device(self) -> Any:
        """The ``device`` argument of graph builds from this bank: :attr:`device` for a device
        bank, ``None`` (the NumPy build) otherwise."""
        return self.device if self.on_device else None

    def numpy(self) -> np.ndarray | None:
        """The rows as a NumPy array of ``dtype`` (``None`` before the first update): the
        array itself for a CPU bank, a host copy for a device bank."""
        if self.embeddings is None or not self.on_device:
            return self.embeddings
        return self.embeddings.cpu().numpy()

    def host_float32(self) -> np.ndarray | None:
        """The rows as they are now, as a float32 ``[N, d]`` NumPy array (``None`` before the
        first update). Read-only for the caller.

        A float32 CPU bank returns itself. Any other bank (float16, or on a device) keeps a
        float32 host mirror: the first call copies every row, later calls copy only the rows
        written since, so that code reading the bank on the host (the hardness target's
        candidate walks, guided re-seeds, :meth:`BatchSampler.measure_epoch_hardness
        <batchsampler.BatchSampler.measure_epoch_hardness>`) sees the same rows wherever the
        bank lives, at the cost of the changed rows' transfer.
        """
        if self.embeddings is None:
            return None
        if not self.on_device and self.dtype == np.float32:
            return self.embeddings
        if self._mirror is None:
            # Always a copy of its own: numpy() of a tensor on the CPU shares the tensor's memory.
            self._mirror = np.array(self.numpy(), dtype=np.float32, copy=True)
            self._stale_rows = np.zeros(self.num_instances, dtype=bool)
            return self._mirror
        rows = np.flatnonzero(self._stale_rows)
        if rows.size:
            if self.on_device:
                import torch

                fresh = self.embeddings[torch.from_numpy(rows).to(self.device)].float().cpu().numpy()
            else:
                fresh = self.embeddings[rows]
            self._mirror[rows] = fresh
            self._stale_rows[rows] = False
        return self._mirror

    def _forget_mirror(self) -> None:
        self._mirror, self._stale_rows = None, None

    def _mark_written(self, rows: np.ndarray) -> None:
        self.seen[rows] = True
        self.last_update[rows] = self.updates
        self.updates += 1
        if self._stale_rows is not None:
            self._stale_rows[rows] = True

    def settle_device(self, embeddings: Any) -> None:
        """Decide :attr:`device` from ``embeddings`` unless decided: a tensor's device, else the CPU.

        :meth:`update` calls it; a sampler calls it before a distributed all-gather (which
        turns the tensors into arrays) so that the bank follows the caller's tensors. Rows
        restored from a checkpoint before the decision move to the decided device.
        """
        if self.device is not None:
            return
        import torch

        device = embeddings.device if _is_torch_tensor(embeddings) and isinstance(embeddings, torch.Tensor) else None
        # (Other accelerators than CUDA are not supported: their tensors go to a CPU bank.)
        if device is None or device.type not in ("cpu", "cuda"):
            device = torch.device("cpu")
        self.device = _concrete(device)
        if self.embeddings is not None and self.on_device:
            self.embeddings = self._to_storage(self.embeddings)
            self._forget_mirror()

    def _to_storage(self, values: np.ndarray) -> Any:
        """Checked NumPy rows of ``dtype`` in this bank's storage (a tensor on a device bank)."""
        if not self.on_device:
            return values
        import torch

        return torch.from_numpy(np.ascontiguousarray(values)).to(self.device)

    def update(self, indices: Any, embeddings: Any) -> None:
        """Overwrite the rows ``indices`` with ``embeddings``.

        Args:
            indices: ``[n]`` integer tensor, array or sequence in ``[0, N)``. If an index repeats,
                the last occurrence wins.
            embeddings: ``[n, d]`` float tensor (any device and float dtype; detached and copied
                to the bank's device: the CPU unless it is a device bank) or array.

        Raises:
            ValueError: on indices out of range, a row count different from ``len(indices)``,
                non-finite values, or a dimension different from earlier updates.
        """
        self.settle_device(embeddings)
        rows = to_index_array("indices", indices, self.num_instances)
        if self.on_device:
            self._update_tensor(rows, embeddings)
            return
        values = to_numpy_2d("embeddings", embeddings)
        if values.shape[0] != rows.size:
            raise ValueError(
                f"embeddings must have one row per index: got {values.shape[0]} rows for {rows.size} indices"
            )
        if self.embeddings is not None and values.shape[1] != self.embeddings.shape[1]:
            raise ValueError(
                f"embeddings must have dimension {self.embeddings.shape[1]} like earlier updates, "
                f"got {values.shape[1]}"
            )
        values = self._cast("embeddings", values)
        if self.embeddings is None:
            self.embeddings = np.zeros((self.num_instances, values.shape[1]), dtype=self.dtype)
        self.embeddings[rows] = values
        self._mark_written(rows)

    def _update_tensor(self, rows: np.ndarray, embeddings: Any) -> None:
        """:meth:`update` of a device bank: checked and written on the device."""
        import torch

        from ._torch_build import to_tensor_2d

        values = to_tensor_2d("embeddings", embeddings, self.device)
        if values.shape[0] != rows.size:
            raise ValueError(
                f"embeddings must have one row per index: got {values.shape[0]} rows for {rows.size} indices"
            )
        if self.embeddings is not None and values.shape[1] != self.embeddings.shape[1]:
            raise ValueError(
                f"embeddings must have dimension {self.embeddings.shape[1]} like earlier updates, "
                f"got {values.shape[1]}"
            )
        values = self._cast_tensor("embeddings", values)
        if rows.size > 1:  # repeated indices: the last occurrence wins (a GPU scatter picks any)
            unique, first_from_end = np.unique(rows[::-1], return_index=True)
            if unique.size != rows.size:
                keep = rows.size - 1 - first_from_end
                rows = rows[keep]
                values = values[torch.from_numpy(keep).to(self.device)]
        if self.embeddings is None:
            self.embeddings = torch.zeros((self.num_instances, values.shape[1]), dtype=values.dtype, device=self.device)
        self.embeddings[torch.from_numpy(rows).to(self.device)] = values
        self._mark_written(rows)

    def _cast_tensor(self, name: str, values: Any) -> Any:
        """:meth:`_cast` for a tensor on the device: the same check and message."""
        import torch

        cast = values.to(torch.float32 if self.dtype == np.float32 else torch.float16)
        low, high = torch.aminmax(cast)
        if not bool(torch.isfinite(low) & torch.isfinite(high)):
            raise self._range_error(name, float(values.abs().max()))
        return cast

    def _range_error(self, name: str, largest: float) -> ValueError:
        limit = float(np.finfo(self.dtype).max)
        return ValueError(
            f"{name} holds values outside the range of the bank's dtype {self.dtype} (|x| <= {limit:.6g}): "
            f"largest |value| {largest:.6g}. Scale the embeddings (cosine similarity ignores scale) or use "
            "a wider bank_dtype"
        )

    def _cast(self, name: str, values: np.ndarray) -> np.ndarray:
        """``values`` in the bank's dtype, checked finite *after* the cast (float16 overflows
        above 65504, float32 above about 3.4e38)."""
        with np.errstate(over="ignore"):  # overflow is reported below, with the dtype's range
            cast = values.astype(self.dtype, copy=False)
        if not (np.isfinite(cast.min()) and np.isfinite(cast.max())):
            raise self._range_error(name, float(np.abs(values).max()))
        return cast

    def check_restore(
        self, embeddings: Any, seen: Any, last_update: Any, updates: Any, where: str
    ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray, int]:
        """Check a saved bank (from a checkpoint) against this one; applies nothing.

        Returns:
            What :meth:`restore` takes.

        Raises:
            ValueError: naming ``where`` and the part that is wrong.
        """
        n = self.num_instances
        seen = np.asarray(seen) if seen is not None else None
        last_update = np.asarray(last_update) if last_update is not None else None
        if seen is None or seen.dtype != np.bool_ or seen.shape != (n,):
            raise ValueError(f"{where}: the bank's seen flags must be a bool array of shape ({n},) (checkpoint for another N?)")
        if last_update is None or not np.issubdtype(last_update.dtype, np.integer) or last_update.shape != (n,):
            raise ValueError(f"{where}: the bank's update clock must be an integer array of shape ({n},)")
        if isinstance(updates, bool) or not isinstance(updates, int) or updates < 0:
            raise ValueError(f"{where}: the bank's update count must be an integer >= 0, got {updates!r}")
        if last_update.min() < -1 or last_update.max() > updates - 1:
            raise ValueError(f"{where}: the bank's update clock is inconsistent with its {updates} updates")
        if ((last_update >= 0) != seen).any():
            raise ValueError(f"{where}: the bank's seen flags and update clock disagree")
        if embeddings is not None:
            embeddings = np.asarray(embeddings)
            if embeddings.ndim != 2 or embeddings.shape[0] != n or embeddings.shape[1] < 1:
                raise ValueError(f"{where}: the bank's embeddings must have shape ({n}, d), got {embeddings.shape}")
            if not np.issubdtype(embeddings.dtype, np.floating):
                raise ValueError(f"{where}: the bank's embeddings must be floats, got {embeddings.dtype}")
            embeddings = self._cast(f"{where}: the bank's embeddings", embeddings)
        elif seen.any():
            raise ValueError(f"{where}: rows are flagged seen but the bank has no embeddings")
        return embeddings, seen.copy(), last_update.astype(np.int64), updates

    def restore(
        self, checked: tuple[np.ndarray | None, np.ndarray, np.ndarray, int], *, device_type: str | None = None
    ) -> None:
        """Replace the bank's contents with what :meth:`check_restore` returned.

        The rows go to the bank's device. A bank whose device is still undecided (``device=None``
        before any update) takes ``device_type`` (the saved bank's, ``"cpu"`` or ``"cuda"``)
        when that is available here (CUDA: the current CUDA device), else stays undecided:
        the rows are kept as NumPy and move with the first update.
        """
        embeddings, self.seen, self.last_update, self.updates = checked
        if self.device is None and device_type in ("cpu", "cuda"):
            import torch

            if device_type == "cpu" or torch.cuda.is_available():
                self.device = _concrete(torch.device(device_type))
        self.embeddings = None if embeddings is None else self._to_storage(embeddings)
        self._forget_mirror()

    def snapshot(self) -> tuple[Any, np.ndarray]:
        """Copies of ``(embeddings, seen)``, for a build that must not see later updates
        (for a device bank the copy of the rows is a tensor on the device).

        Raises:
            RuntimeError: before the first :meth:`update` (there is nothing to copy).
        """
        if self.embeddings is None:
            raise RuntimeError("the bank is empty: update() it before taking a snapshot")
        rows = self.embeddings.clone() if self.on_device else self.embeddings.copy()
        return rows, self.seen.copy()

    def staleness(self) -> np.ndarray:
        """int64 ``[N]``: updates since each row was last written (``-1`` for rows never seen)."""
        return np.where(self.seen, self.updates - 1 - self.last_update, -1)


def _concrete(device: Any) -> Any:
    """``device`` with its index filled in (``cuda`` is the current CUDA device)."""
    import torch

    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device
