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
        if self.embeddings is None:
            self.embeddings = np.zeros((self.num_instances, values.shape[1]), dtype=self.dtype)
        elif values.shape[1] != self.embeddings.shape[1]:
            raise ValueError(
                f"embeddings must have dimension {self.embeddings.shape[1]} like earlier updates, "
                f"got {values.shape[1]}"
            )
        self.embeddings[rows] = values
        self.seen[rows] = True
        self.last_update[rows] = self.updates
        self.updates += 1

    def staleness(self) -> np.ndarray:
        """int64 ``[N]``: updates since each row was last written (``-1`` for rows never seen)."""
        return np.where(self.seen, self.updates - 1 - self.last_update, -1)
