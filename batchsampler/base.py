"""Shared base of all batch samplers: epochs, seeding, length, resumption, distributed slicing.

Every sampler of the package is a ``torch.utils.data.Sampler[list[int]]`` meant for
``DataLoader(dataset, batch_sampler=sampler)``; all take the same constructor arguments and
offer the same ``update`` / ``refresh`` methods, so that scripts can swap them freely.

How an epoch is made: batch ``i`` of epoch ``e`` is drawn with its own generator seeded by
``(seed, e, i)`` from the instances not used earlier in the epoch (see :mod:`batchsampler.collect`).
So every rank of a distributed job computes the same global batch stream and keeps its own
slice, a resumed run can rebuild the position of an interrupted one, and a new graph can take
over between any two batches. :class:`~batchsampler.BatchSampler` grows its batches in walk
groups (``lockstep_batches``, aligned to multiples of it, with one generator per group): the
same holds with "group" for "batch", and :meth:`BaseBatchSampler.save` keeps the rest of the
group in progress.
"""

from __future__ import annotations

import logging
import time
from abc import abstractmethod
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from torch.utils.data import Sampler

from ._checkpoint import CheckpointMixin
from ._validation import check_int, num_instances_of, to_numpy_2d
from .bank import EmbeddingBank
from .collect import uniform_batch
from .distributed import DistributedContext
from .walk import WalkStats, num_batches

__all__ = ["BaseBatchSampler"]

logger = logging.getLogger(__name__)

# Independent random streams derived from the user's seed: SeedSequence([seed, stream, ...]).
EPOCH_STREAM = 0
GRAPH_STREAM = 1

class EpochForwarder:
    """The ``.sampler`` child of a batch sampler: forwards ``set_epoch`` to its owner.

    Lightning calls ``set_epoch`` on ``loader.batch_sampler.sampler`` and accelerate looks for
    a ``sampler`` attribute; neither calls the batch sampler itself.
    """

    def __init__(self, owner: BaseBatchSampler) -> None:
        self._owner = owner

    def set_epoch(self, epoch: int) -> None:
        self._owner.set_epoch(epoch)

    def __len__(self) -> int:
        return self._owner.num_instances


class BaseBatchSampler(CheckpointMixin, Sampler[list[int]]):
    """Base class: yields lists of dataset indices, one epoch per ``iter(sampler)``.

    Args:
        data: the number of instances ``N``, or a sized dataset (``len(data)`` is used).
        batch_size: ``B``, indices per batch *on this process*. In distributed mode the global
            batch has ``B * world_size`` indices and each rank yields its slice.
        replacement: ``False`` (default): every index exactly once per epoch. ``True``: batches
            are independent (indices unique within a batch only) and all full.
        drop_last: drop the last batch if smaller than the others. The epoch has
            ``N // (B * world_size)`` batches with ``drop_last``, else ``ceil(N / (B * world_size))``.
        seed: non-negative int, identical on every rank; same (seed, epoch, graph) gives the
            same batches.
        embeddings: optional ``[N, d]`` initial embeddings (array or tensor).
        distributed: ``None`` (default): shard when ``torch.distributed`` is initialised;
            ``False``: never (e.g. when accelerate or Lightning shard batches themselves).
        bank_dtype: storage of the embedding bank, ``numpy.float32`` or ``numpy.float16``.

    Epochs: each iteration produces the current epoch and advances it by one, so successive
    epochs differ even if nobody calls :meth:`set_epoch`; ``set_epoch(e)`` (also reachable as
    ``sampler.sampler.set_epoch(e)``, where Lightning calls it) selects ``e``. The epoch is
    claimed when the iterator yields its first batch, so the iterators a multi-worker
    DataLoader creates and drops unused consume nothing (see :meth:`__iter__`).

    Checkpoints: :meth:`state_dict` / :meth:`load_state_dict` (O(1) position) and :meth:`save` /
    :meth:`load` (bank, graph, batches of the epoch); saves are atomic and loads check
    everything before they apply anything.

    Raises:
        TypeError: non-integer ``batch_size`` or ``seed``, non-bool flags, ``data`` without length.
        ValueError: ``batch_size`` outside ``[1, N / world_size]``, negative ``seed``, settings
            that differ between ranks (on every rank), ``embeddings`` without ``N`` rows, or a
            torch ``Sampler`` as ``data`` (Lightning's re-instantiation under DDP).
    """

    lockstep_batches: int = 1
    """Batches grown together (a walk group); the graph and the random stream of a walk change
    only between groups. 1 for every sampler except :class:`~batchsampler.BatchSampler`."""

    def __init__(
        self,
        data: Any,
        batch_size: int,
        *,
        replacement: bool = False,
        drop_last: bool = False,
        seed: int = 0,
        embeddings: Any = None,
        distributed: bool | None = None,
        bank_dtype: Any = np.float32,
    ) -> None:
        if isinstance(data, Sampler):
            # PyTorch Lightning (use_distributed_sampler=True, its default) re-instantiates custom
            # batch samplers as cls(DistributedSampler(...), batch_size=..., drop_last=...): the
            # copy would see N / world_size instances and silently drop the rest of the data.
            raise ValueError(
                f"data is a {type(data).__name__} (a torch Sampler), expected a dataset or the number of "
                f"instances. PyTorch Lightning does this when it re-instantiates a custom batch sampler "
                f"under DDP: pass Trainer(use_distributed_sampler=False); {type(self).__name__} shards "
                "itself over torch.distributed."
            )
        self.num_instances = num_instances_of("data", data)
        self.batch_size = check_int("batch_size", batch_size, low=1)
        self.replacement = check_bool("replacement", replacement)
        self.drop_last = check_bool("drop_last", drop_last)
        self.seed = check_int("seed", seed, low=0)
        self.dist = DistributedContext.detect(distributed)
        if self.global_batch_size > self.num_instances:
            raise ValueError(
                f"batch_size must be <= the number of instances ({self.num_instances}) divided by the "
                f"world size ({self.dist.world_size}), got {self.batch_size}"
            )
        self.bank = EmbeddingBank(self.num_instances, dtype=bank_dtype)
        self.walk_stats = WalkStats()
        self.sampler_seconds = 0.0  # time spent producing batches (walks, refresh waits), all epochs
        self.sampler = EpochForwarder(self)
        self._next_epoch = 0  # epoch of the next iteration, unless one was selected
        # (epoch, batch) the next iteration starts at, from set_epoch or load_state_dict.
        self._resume: tuple[int, int] | None = None
        self._iteration = 0  # iterations started; an iterator checks it to detect a newer one
        self._current_epoch: int | None = None  # epoch of the latest iteration started
        self._position = 0  # batches that iteration has yielded
        self._history: list[list[int]] = []  # global batches produced in the current epoch
        # From load(): (epoch, batches produced, batches grown ahead by index).
        self._restored_history: tuple[int, list[list[int]], dict[int, list[int]]] | None = None
        # Batches grown ahead in the current walk group, by index (see ``lockstep_batches``).
        self._grown: dict[int, list[int]] = {}
        self._initial_embeddings = embeddings

    def _rank_invariants(self) -> dict[str, Any]:
        """Every setting that must be identical on all ranks (they compute the same batches)."""
        return {
            "class": type(self).__name__,
            "seed": self.seed,
            "num_instances": self.num_instances,
            "batch_size": self.batch_size,
            "replacement": self.replacement,
            "drop_last": self.drop_last,
            "bank_dtype": self.bank.dtype.name,
            "embeddings": self._initial_embeddings is not None,
        }

    def _finish_init(self) -> None:
        """Check the settings across ranks, then fill the bank from the constructor's
        ``embeddings`` and refresh. Subclass constructors call this last."""
        self.dist.check_identical(**self._rank_invariants())
        embeddings, self._initial_embeddings = self._initial_embeddings, None
        if embeddings is None:
            return
        rows = getattr(embeddings, "shape", (None,))[0]
        if rows != self.num_instances:
            raise ValueError(
                f"embeddings must have one row per instance ({self.num_instances}), got shape "
                f"{tuple(getattr(embeddings, 'shape', ()))}"
            )
        self.bank.update(np.arange(self.num_instances), embeddings)
        self.refresh(blocking=True)  # nothing else to serve until the first graph exists

    # ------------------------------------------------------------------ epochs

    @property
    def global_batch_size(self) -> int:
        """Indices per batch over all ranks: ``batch_size * world_size``."""
        return self.batch_size * self.dist.world_size

    @property
    def epoch(self) -> int:
        """The epoch the next ``iter(sampler)`` will produce (once its first batch is taken)."""
        return self._resume[0] if self._resume is not None else self._next_epoch

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch of the next iteration (``DistributedSampler`` convention).

        A position restored by :meth:`load_state_dict` for this same epoch is kept, so that a
        framework calling ``set_epoch(e)`` just before resuming epoch ``e`` does not restart it.

        Raises:
            TypeError, ValueError: if ``epoch`` is not an integer ``>= 0``.
        """
        epoch = check_int("epoch", epoch, low=0)
        if self._resume is None or self._resume[0] != epoch:
            self._resume = (epoch, 0)

    def __len__(self) -> int:
        return num_batches(self.num_instances, self.global_batch_size, self.drop_last)

    def __iter__(self) -> Iterator[list[int]]:
        """One epoch of batches.

        The epoch is claimed when the first batch is requested, not by ``iter()`` itself:
        torch's multi-process DataLoader calls ``iter(batch_sampler)`` twice per epoch and
        drops the first iterator unused, so an iterator that never yields consumes nothing.
        Starting a new iteration ends the previous one: the older iterator raises
        ``RuntimeError`` if it is advanced again.

        One exception: a restored position at the *end* of an epoch (a state taken after its
        last batch) is taken by the next iterator created, which yields nothing. A loader that
        drops that iterator, as ``StatefulDataLoader`` does when its state says the epoch had
        finished, then starts the next epoch, as with torch's own samplers.
        """
        if self._resume is not None and self._resume[1] >= len(self):
            epoch = self._resume[0]
            self._resume, self._next_epoch = None, epoch + 1
            self._iteration += 1
            self._current_epoch, self._position = epoch, len(self)
            self._history, self._grown = [], {}
            return iter(())
        return self._iterate()

    def _iterate(self) -> Iterator[list[int]]:
        epoch, start = self._resume if self._resume is not None else (self._next_epoch, 0)
        self._resume, self._next_epoch = None, epoch + 1
        self._iteration += 1
        iteration = self._iteration
        total = len(self)
        self._current_epoch, self._position = epoch, start
        self.walk_stats = WalkStats()
        self._on_epoch_start(epoch, resumed=start > 0)
        used = np.zeros(self.num_instances, dtype=bool)
        self._grown = {}
        produced = self._restore_progress(epoch, start, used)
        self._history = produced
        for index in range(start, total):
            if index < len(produced):
                batch = produced[index]  # produced before a checkpoint: replay as it was
            else:
                began = time.perf_counter()
                self._on_batch_start()
                batch = self._next_batch(epoch, index, used)
                produced.append(batch)
                self.sampler_seconds += time.perf_counter() - began
            self._position = index + 1
            yield self.dist.local_slice(batch)
            if self._iteration != iteration:
                raise RuntimeError(
                    f"this iterator of {type(self).__name__} (epoch {epoch}) was superseded: a newer "
                    "iter(sampler) started another epoch. A batch sampler serves one iteration at a time."
                )

    def _batch_rng(self, epoch: int, index: int) -> np.random.Generator:
        return np.random.default_rng(np.random.SeedSequence([self.seed, EPOCH_STREAM, epoch, index]))

    def _next_batch(self, epoch: int, index: int, used: np.ndarray) -> list[int]:
        """Global batch ``index`` of ``epoch``; marks its indices in ``used``."""
        if self.replacement:
            used = np.zeros(self.num_instances, dtype=bool)
            batch = self._collect(used, self.global_batch_size, self._batch_rng(epoch, index))
        elif index in self._grown:
            batch = self._grown.pop(index)  # grown with an earlier batch of its group
        else:
            # A group runs to the next multiple of ``lockstep_batches`` (so a replay from any
            # position regrows the same groups) and never past the end of the epoch.
            stop = min(len(self), (index // self.lockstep_batches + 1) * self.lockstep_batches)
            sizes = [self._batch_size_at(i) for i in range(index, stop)]
            batch, *rest = self._collect_group(used, sizes, epoch, index)
            self._grown.update(zip(range(index + 1, stop), rest))
        return self._padded(batch)

    def _batch_size_at(self, index: int) -> int:
        return min(self.global_batch_size, self.num_instances - index * self.global_batch_size)

    def _padded(self, batch: list[int]) -> list[int]:
        if len(batch) % self.dist.world_size:
            # Pad the last batch to a multiple of the world size with indices of the first
            # batch, as DistributedSampler does, so that every rank gets the same batch size.
            pad = self.dist.world_size - len(batch) % self.dist.world_size
            batch = batch + self._history[0][:pad]
        return batch

    def _collect_group(self, used: np.ndarray, sizes: list[int], epoch: int, first: int) -> list[list[int]]:
        """Batches ``first .. first + len(sizes) - 1`` of ``epoch``, or a prefix of them (at least
        batch ``first``), marking ``used``; the others are collected when they are due.

        By default only batch ``first``, from its own generator.
        """
        return [self._collect(used, sizes[0], self._batch_rng(epoch, first))]

    def _restore_progress(self, epoch: int, start: int, used: np.ndarray) -> list[list[int]]:
        """Batches ``0 .. start - 1`` of ``epoch`` (or more, if a checkpoint has them); marks ``used``."""
        restored, self._restored_history = self._restored_history, None
        if restored is not None and restored[0] == epoch and len(restored[1]) >= start:
            # Batches produced beyond ``start`` (prefetched before the checkpoint) count as used.
            produced = [list(batch) for batch in restored[1]]
            self._grown = dict(restored[2])
            if not self.replacement:
                for batch in [*produced, *self._grown.values()]:
                    used[batch] = True
            return produced
        if start and self._graph_changed_before_resume():
            logger.warning(
                "resuming epoch %d at batch %d by replay with the current graph; the graph changed "
                "during that epoch, so earlier batches may differ (load() a checkpoint to resume exactly)",
                epoch, start,
            )
        produced = []
        for index in range(start):
            self._history = produced  # the padding of a last batch reads the first one
            produced.append(self._next_batch(epoch, index, used))
        return produced

    def _graph_changed_before_resume(self) -> bool:
        """Whether the interrupted run changed its graph before the resume position."""
        return False

    def _on_epoch_start(self, epoch: int, resumed: bool) -> None:
        """Hook: called before the first batch of every epoch (``resumed``: mid-epoch start)."""

    def _on_batch_start(self) -> None:
        """Hook: called before producing each new global batch."""

    @abstractmethod
    def _collect(self, used: np.ndarray, size: int, rng: np.random.Generator) -> list[int]:
        """Collect one global batch of ``size`` unused indices with ``rng`` (marking ``used``)."""

    def _uniform(self, used: np.ndarray, size: int, rng: np.random.Generator) -> list[int]:
        return uniform_batch(used, size, rng)

    # ------------------------------------------------------------------ training-time service

    def update(self, indices: Any, embeddings: Any) -> None:
        """Store fresh embeddings of ``indices`` (e.g. from the training forward pass).

        In distributed mode this is a collective: every rank must call it with its own batch,
        and every rank's bank receives the rows of all ranks.

        Args:
            indices: ``[n]`` dataset indices of the batch (tensor, array or list).
            embeddings: ``[n, d]`` embeddings (tensor on any device and float dtype, or array);
                detached and copied to the CPU bank.

        Raises:
            ValueError: on indices outside ``[0, N)``, mismatched row count, non-finite values
                (after the cast to ``bank_dtype``: float16 overflows above 65504).
            RuntimeError: in distributed mode, when the ranks' ``update`` calls are out of step.
        """
        indices, embeddings = self.dist.gather_update(indices, embeddings, call_index=self.bank.updates)
        self.bank.update(indices, embeddings)

    def refresh(self, *, blocking: bool | None = None) -> Any:
        """Rebuild whatever the sampler derives from the bank (nothing here); returns ``None``."""
        return None

    def refresh_from(
        self,
        encode_fn: Callable[[Any], Any],
        dataset: Any,
        *,
        batch_size: int = 256,
        collate_fn: Callable[[list], Any] | None = None,
        show_progress: bool = False,
    ) -> Any:
        """Encode the whole dataset, store every embedding in the bank, then :meth:`refresh`.

        For users who prefer a separate encoding pass to embeddings from the training step.
        In distributed mode each rank encodes a contiguous ``1 / world_size`` share and the
        shares are all-gathered once, so the pass scales with ranks.

        Args:
            encode_fn: maps one collated batch of ``dataset`` items to ``[n, d]`` embeddings
                (tensor or array); called under ``torch.no_grad()``. Put the model in eval mode.
            dataset: the ``N`` instances, in index order (a map-style dataset).
            batch_size: items per encoding batch.
            collate_fn: as in ``DataLoader`` (default collation if ``None``).
            show_progress: show a tqdm progress bar.

        Returns:
            What :meth:`refresh` returns (the new graph for graph samplers).

        Raises:
            ValueError: if ``len(dataset) != N`` or ``encode_fn`` returns the wrong number of rows.
        """
        import torch
        from torch.utils.data import DataLoader, Subset
        from tqdm.auto import tqdm

        if num_instances_of("dataset", dataset) != self.num_instances:
            raise ValueError(f"dataset must have {self.num_instances} instances, got {len(dataset)}")
        batch_size = check_int("batch_size", batch_size, low=1)
        share = -(-self.num_instances // self.dist.world_size)
        rows = np.arange(self.dist.rank * share, min(self.num_instances, (self.dist.rank + 1) * share))
        loader = DataLoader(Subset(dataset, rows.tolist()), batch_size=batch_size, collate_fn=collate_fn)
        chunks = []
        with torch.no_grad():
            for batch in tqdm(loader, desc="encoding", unit="batch", disable=not show_progress):
                chunks.append(to_numpy_2d("encode_fn(batch)", encode_fn(batch)).astype(np.float32, copy=False))
        encoded = np.concatenate(chunks) if chunks else np.zeros((0, 1), dtype=np.float32)
        if encoded.shape[0] != rows.size:
            raise ValueError(f"encode_fn must return one row per item: got {encoded.shape[0]} rows for {rows.size} items")
        self.bank.update(self.dist.all_gather_rows(rows), self.dist.all_gather_rows(encoded))
        return self.refresh(blocking=True)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_instances={self.num_instances}, batch_size={self.batch_size}, "
            f"replacement={self.replacement}, drop_last={self.drop_last}, seed={self.seed}, "
            f"world_size={self.dist.world_size})"
        )


def check_bool(name: str, value: Any) -> bool:
    """Return ``value`` if it is a bool (NumPy bools included), else raise ``TypeError``."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__} ({value!r})")
    return bool(value)
