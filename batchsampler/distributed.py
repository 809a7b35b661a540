"""Distributed training over ``torch.distributed``: one global batch stream, one slice per rank.

Every rank runs the same sampler with the same seed and computes the same global batches of
``batch_size * world_size`` indices; rank ``r`` yields ``batch[r::world_size]``. The global
batch is therefore one hard-to-distinguish set, split across ranks. ``update`` all-gathers the
embeddings of every rank's batch so that all banks, and hence all graphs, stay identical.

Collectives happen only in the main process, in calls that every rank makes in the same order
(``update``, blocking ``refresh``, the sampler's constructor); background graph builds never
communicate: each rank builds the same graph from the same bank snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from ._validation import to_index_array, to_numpy_2d

__all__ = ["DistributedContext"]


@dataclass(frozen=True)
class DistributedContext:
    """Rank, world size and process group of the sampler (``world_size == 1``: not distributed)."""

    rank: int = 0
    world_size: int = 1
    group: Any = None

    @classmethod
    def detect(cls, distributed: bool | None) -> DistributedContext:
        """The context for ``distributed`` (``None``: on when torch.distributed is initialised).

        Raises:
            ValueError: if ``distributed`` is True but torch.distributed is not initialised.
        """
        initialised = dist.is_available() and dist.is_initialized()
        if distributed is None:
            distributed = initialised
        if not distributed:
            return cls()
        if not initialised:
            raise ValueError("distributed=True needs torch.distributed.init_process_group() first")
        return cls(rank=dist.get_rank(), world_size=dist.get_world_size(), group=dist.group.WORLD)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def local_slice(self, batch: list[int]) -> list[int]:
        """This rank's share of a global batch (strided, so shares are equal in size)."""
        return batch[self.rank :: self.world_size] if self.enabled else batch

    def _device(self) -> torch.device:
        if dist.get_backend(self.group) == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")

    def check_identical(self, **values: int) -> None:
        """Raise ``ValueError`` naming the first value that differs between ranks."""
        if not self.enabled:
            return
        local = torch.tensor(list(values.values()), dtype=torch.int64, device=self._device())
        low, high = local.clone(), local.clone()
        dist.all_reduce(low, op=dist.ReduceOp.MIN, group=self.group)
        dist.all_reduce(high, op=dist.ReduceOp.MAX, group=self.group)
        for name, lo, hi in zip(values, low.tolist(), high.tolist()):
            if lo != hi:
                raise ValueError(f"{name} must be identical on every rank, got values from {lo} to {hi}")

    def all_gather_rows(self, array: np.ndarray) -> np.ndarray:
        """Concatenate every rank's ``array`` along axis 0 (row counts may differ), in rank order."""
        if not self.enabled:
            return array
        device = self._device()
        local = torch.from_numpy(np.ascontiguousarray(array)).to(device)
        counts = torch.tensor([local.shape[0]], dtype=torch.int64, device=device)
        all_counts = [torch.zeros_like(counts) for _ in range(self.world_size)]
        dist.all_gather(all_counts, counts, group=self.group)
        sizes = [int(c.item()) for c in all_counts]
        padded = torch.zeros((max(sizes), *local.shape[1:]), dtype=local.dtype, device=device)
        padded[: local.shape[0]] = local
        gathered = [torch.empty_like(padded) for _ in range(self.world_size)]
        dist.all_gather(gathered, padded, group=self.group)
        return torch.cat([g[:n] for g, n in zip(gathered, sizes)]).cpu().numpy()

    def gather_update(self, indices: Any, embeddings: Any) -> tuple[Any, Any]:
        """All ranks' ``(indices, embeddings)`` of one ``update`` call, concatenated."""
        if not self.enabled:
            return indices, embeddings
        # Validate locally, then agree on the outcome, so that a bad call raises on every rank
        # instead of leaving the others waiting in the all-gather.
        error: Exception | None = None
        rows = values = None
        try:
            rows = to_index_array("indices", indices, np.iinfo(np.int64).max)
            values = to_numpy_2d("embeddings", embeddings).astype(np.float32, copy=False)
            if values.shape[0] != rows.size:
                raise ValueError(
                    f"embeddings must have one row per index: got {values.shape[0]} rows for {rows.size} indices"
                )
        except (TypeError, ValueError) as caught:
            error = caught
        dim = -1 if error is not None else values.shape[1]
        status = torch.tensor([dim, -dim], dtype=torch.int64, device=self._device())
        dist.all_reduce(status, op=dist.ReduceOp.MIN, group=self.group)
        if error is not None:
            raise error
        if status[0].item() < 0:
            raise ValueError("update failed on another rank (see its error); nothing was stored")
        if status[0].item() != -status[1].item():
            raise ValueError("embeddings must have the same dimension on every rank")
        return self.all_gather_rows(rows), self.all_gather_rows(values)
