"""Feed embeddings back to a sampler when the training loop never sees the batch indices.

Trainers such as sentence-transformers' ``SentenceTransformerTrainer`` or HF's ``Trainer``
collate batches into model inputs and drop everything else, so a loss cannot call
``sampler.update(indices, embeddings)``: it has the embeddings, not the indices.
:class:`FeedbackBatchSampler` closes the gap. It wraps a library sampler, records every batch
it hands to the loader, in order, and :meth:`FeedbackBatchSampler.update` pairs embeddings
with the oldest recorded batch not yet fed back. That pairing is exact because a
``DataLoader`` delivers batches in the order its batch sampler yields them, with worker
processes too (``in_order=True``, torch's default): the ``k``-th batch the training step sees
is the ``k``-th batch yielded.

Distributed: the wrapped sampler shards itself (every rank yields its slice of one global
batch; ``update`` is a collective that all-gathers). Frameworks built on accelerate wrap any
batch sampler once more in ``BatchSamplerShard``, which deals whole batches out round-robin
(batch ``j`` to rank ``j % world_size``). With ``replicas=world_size`` every slice is yielded
``world_size`` times in a row, so rank ``r`` receives exactly its own slice of each global
batch, every rank sees the same number of batches, and the global batch stays one
hard-to-distinguish set.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable, Iterator
from typing import Any

from torch.utils.data import Sampler

from ._validation import check_int

__all__ = ["FeedbackBatchSampler"]

logger = logging.getLogger(__name__)


class FeedbackBatchSampler(Sampler[list[int]]):
    """A batch sampler that remembers what it yielded, for :meth:`update` without indices.

    Args:
        sampler: a sampler of this package (``BatchSampler``, ``KNNBatchSampler``,
            ``UniformBatchSampler``).
        replicas: times each batch is yielded in a row (default 1). Pass the world size when a
            framework deals whole batches out to ranks round-robin (accelerate's
            ``BatchSamplerShard``: HF ``Trainer`` and sentence-transformers under DDP).
        max_pending: batches yielded but not yet fed back that are kept (default 4096). The
            oldest are dropped beyond it, with a warning: nobody is calling :meth:`update`.
        transform: optional ``iterator of batches -> iterator of batches`` applied to each
            epoch of the wrapped sampler before anything is recorded (e.g. a repair that moves
            rows between nearby batches). It must yield as many batches as it receives.

    ``len()``, ``set_epoch`` (also through the ``.sampler`` child that Lightning and accelerate
    call), ``state_dict`` / ``load_state_dict``, ``refresh`` and the statistics are those of the
    wrapped sampler, available as :attr:`base_sampler`.

    Raises:
        TypeError: if ``sampler`` has no ``update`` method.
        ValueError: if ``replicas`` or ``max_pending`` is below 1.
    """

    def __init__(
        self,
        sampler: Any,
        *,
        replicas: int = 1,
        max_pending: int = 4096,
        transform: Callable[[Iterator[list[int]]], Iterator[list[int]]] | None = None,
    ) -> None:
        if not callable(getattr(sampler, "update", None)):
            raise TypeError(f"sampler must be a sampler of batchsampler (with update()), got {type(sampler).__name__}")
        if transform is not None and not callable(transform):
            raise TypeError(f"transform must be callable or None, got {type(transform).__name__}")
        self.base_sampler = sampler
        self.replicas = check_int("replicas", replicas, low=1)
        self.max_pending = check_int("max_pending", max_pending, low=1)
        self.transform = transform
        self.sampler = sampler.sampler  # the child whose set_epoch frameworks call
        self._pending: collections.deque[list[int]] = collections.deque()
        self.fed_back = 0
        """Batches fed back so far."""
        self.dropped = 0
        """Recorded batches dropped unfed (past ``max_pending``, or left over from an epoch that
        was abandoned before its end)."""
        self._unrecorded = 0  # batches still to yield without recording (see skip_next)

    def __len__(self) -> int:
        return len(self.base_sampler) * self.replicas

    def __iter__(self) -> Iterator[list[int]]:
        return self._iterate()

    def _iterate(self) -> Iterator[list[int]]:
        inner = iter(self.base_sampler)
        if self.transform is not None:
            inner = self.transform(inner)
        started = False
        for batch in inner:
            if not started:
                # A new epoch: batches still pending belong to an abandoned one (a loop that
                # broke early); they never reach a loss.
                started = True
                self.dropped += len(self._pending)
                self._pending.clear()
            if self._unrecorded:
                self._unrecorded -= 1
            else:
                self._pending.append(list(batch))
            if len(self._pending) > self.max_pending:
                self._pending.popleft()
                self.dropped += 1
                if self.dropped == 1:
                    logger.warning("more than %d batches yielded without update(): dropping the oldest", self.max_pending)
            for _ in range(self.replicas):
                yield batch

    @property
    def pending(self) -> int:
        """Batches yielded and not yet fed back."""
        return len(self._pending)

    def next_indices(self) -> list[int]:
        """The indices of the batch the next :meth:`update` will be paired with.

        Raises:
            RuntimeError: if no batch is pending.
        """
        if not self._pending:
            raise RuntimeError(
                "update() without a pending batch: every yielded batch has been fed back already "
                "(call update() once per batch the training step consumed)"
            )
        return self._pending[0]

    def update(self, embeddings: Any) -> list[int]:
        """Store ``embeddings`` ``[n, d]`` for the oldest batch not yet fed back; returns its indices.

        Call it once per batch the training step consumes, on every rank in distributed mode
        (the wrapped sampler's ``update`` is a collective there).

        Raises:
            RuntimeError: if no batch is pending.
            ValueError: if ``embeddings`` does not have one row per index of that batch (the
                stream and the calls are out of step), or as the wrapped ``update`` raises.
        """
        indices = self.next_indices()
        rows = getattr(embeddings, "shape", (None,))[0]
        if rows != len(indices):
            raise ValueError(
                f"embeddings must have one row per index of the pending batch ({len(indices)}), got shape "
                f"{tuple(getattr(embeddings, 'shape', ()))}: update() calls and consumed batches are out of step"
            )
        self.base_sampler.update(indices, embeddings)
        self._pending.popleft()
        self.fed_back += 1
        return indices

    def skip(self, count: int = 1) -> None:
        """Forget the ``count`` oldest pending batches (consumed without a loss call, e.g. the
        batches a resumed trainer skips)."""
        count = check_int("count", count, low=0, high=len(self._pending))
        for _ in range(count):
            self._pending.popleft()
        self.dropped += count

    def skip_next(self, count: int) -> None:
        """Do not record the next ``count`` batches yielded: the loader will skip them without a
        loss call (a trainer resuming mid-epoch replays and discards the batches it had trained
        on, as HF ``Trainer`` does with ``skip_first_batches``)."""
        self._unrecorded = check_int("count", count, low=0)

    # Everything else is the wrapped sampler's.
    def set_epoch(self, epoch: int) -> None:
        self.base_sampler.set_epoch(epoch)

    def state_dict(self) -> dict[str, Any]:
        return self.base_sampler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.base_sampler.load_state_dict(state)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name == "base_sampler":
            raise AttributeError(name)
        return getattr(self.base_sampler, name)

    def __repr__(self) -> str:
        return f"FeedbackBatchSampler({self.base_sampler!r}, replicas={self.replicas}, pending={self.pending})"
