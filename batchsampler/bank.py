"""The embedding bank: the latest embedding of every instance, filled during training."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._validation import check_int, to_index_array, to_numpy_2d

__all__ = ["EmbeddingBank"]


class EmbeddingBank:
    """Latest embedding per instance, plus which instances have been seen at all.

    Storage is allocated at the first :meth:`update`, when the dimension is known.

    Args:
        num_instances: ``N``, the number of rows.
        dtype: storage dtype, ``numpy.float32`` (default) or ``numpy.float16`` (half the memory).

    Attributes:
        embeddings: ``[N, d]`` array of ``dtype`` (``None`` before the first update); rows never
            updated are zero and flagged False in :attr:`seen`.
        seen: bool ``[N]``, True for rows written at least once.
        updates: number of :meth:`update` calls so far (the bank's clock).
        last_update: int64 ``[N]``, the clock value when each row was last written (-1: never).
    """

    def __init__(self, num_instances: int, dtype: Any = np.float32) -> None:
        self.num_instances = check_int("num_instances", num_instances, low=1)
        dtype = np.dtype(dtype)
        if dtype not in (np.float32, np.float16):
            raise ValueError(f"dtype must be float32 or float16, got {dtype}")
        self.dtype = dtype
        self.embeddings: np.ndarray | None = None
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

    def update(self, indices: Any, embeddings: Any) -> None:
        """Overwrite the rows ``indices`` with ``embeddings``.

        Args:
            indices: ``[n]`` integer tensor, array or sequence in ``[0, N)``. If an index repeats,
                the last occurrence wins.
            embeddings: ``[n, d]`` float tensor (any device and float dtype; detached and copied
                to the CPU) or array.

        Raises:
            ValueError: on indices out of range, a row count different from ``len(indices)``,
                non-finite values, or a dimension different from earlier updates.
        """
        rows = to_index_array("indices", indices, self.num_instances)
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
        self.seen[rows] = True
        self.last_update[rows] = self.updates
        self.updates += 1

    def _cast(self, name: str, values: np.ndarray) -> np.ndarray:
        """``values`` in the bank's dtype, checked finite *after* the cast (float16 overflows
        above 65504, float32 above about 3.4e38)."""
        with np.errstate(over="ignore"):  # overflow is reported below, with the dtype's range
            cast = values.astype(self.dtype, copy=False)
        if not (np.isfinite(cast.min()) and np.isfinite(cast.max())):
            limit = float(np.finfo(self.dtype).max)
            raise ValueError(
                f"{name} holds values outside the range of the bank's dtype {self.dtype} (|x| <= {limit:.6g}): "
                f"largest |value| {float(np.abs(values).max()):.6g}. Scale the embeddings (cosine similarity "
                "ignores scale) or use a wider bank_dtype"
            )
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

    def restore(self, checked: tuple[np.ndarray | None, np.ndarray, np.ndarray, int]) -> None:
        """Replace the bank's contents with what :meth:`check_restore` returned."""
        self.embeddings, self.seen, self.last_update, self.updates = checked

    def snapshot(self) -> tuple[np.ndarray, np.ndarray]:
        """Copies of ``(embeddings, seen)``, for a build that must not see later updates.

        Raises:
            RuntimeError: before the first :meth:`update` (there is nothing to copy).
        """
        if self.embeddings is None:
            raise RuntimeError("the bank is empty: update() it before taking a snapshot")
        return self.embeddings.copy(), self.seen.copy()

    def staleness(self) -> np.ndarray:
        """int64 ``[N]``: updates since each row was last written (``-1`` for rows never seen)."""
        return np.where(self.seen, self.updates - 1 - self.last_update, -1)
