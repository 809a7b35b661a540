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

import json
import logging
import os
import time
from abc import abstractmethod
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from torch.utils.data import Sampler

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

_CHECKPOINT_VERSION = 1


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


class BaseBatchSampler(Sampler[list[int]]):
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

    Epochs: each ``iter(sampler)`` produces the current epoch and advances it by one, so
    successive epochs differ even if nobody calls :meth:`set_epoch`; ``set_epoch(e)`` (also
    reachable as ``sampler.sampler.set_epoch(e)``, where Lightning calls it) selects ``e``.

    Raises:
        TypeError: non-integer ``batch_size`` or ``seed``, non-bool flags, ``data`` without length.
        ValueError: ``batch_size`` outside ``[1, N / world_size]``, negative ``seed``, seeds or
            sizes that differ between ranks, or ``embeddings`` without ``N`` rows.
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
        self.dist.check_identical(seed=self.seed, num_instances=self.num_instances, batch_size=self.batch_size)
        self.bank = EmbeddingBank(self.num_instances, dtype=bank_dtype)
        self.walk_stats = WalkStats()
        self.sampler_seconds = 0.0  # time spent producing batches (walks, refresh waits), all epochs
        self.sampler = EpochForwarder(self)
        self._epoch = 0  # epoch of the next iteration
        self._resume_position = 0  # batch the next iteration starts at (after load_state_dict)
        self._current_epoch: int | None = None  # epoch of the iteration in progress
        self._position = 0  # batches yielded in the current epoch
        self._history: list[list[int]] = []  # global batches produced in the current epoch
        # From load(): (epoch, batches produced, batches grown ahead by index).
        self._restored_history: tuple[int, list[list[int]], dict[int, list[int]]] | None = None
        # Batches grown ahead in the current walk group, by index (see ``lockstep_batches``).
        self._grown: dict[int, list[int]] = {}
        self._initial_embeddings = embeddings

    def _load_initial_embeddings(self) -> None:
        """Fill the bank from the constructor's ``embeddings`` and refresh (subclasses call this last)."""
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
        """The epoch the next ``iter(sampler)`` will produce."""
        return self._epoch

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch of the next iteration (``DistributedSampler`` convention)."""
        self._epoch = check_int("epoch", epoch, low=0)
        self._resume_position = 0

    def __len__(self) -> int:
        return num_batches(self.num_instances, self.global_batch_size, self.drop_last)

    def __iter__(self) -> Iterator[list[int]]:
        epoch, start = self._epoch, self._resume_position
        self._epoch, self._resume_position = epoch + 1, 0
        return self._iterate(epoch, start)

    def _iterate(self, epoch: int, start: int) -> Iterator[list[int]]:
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
            ValueError: on indices outside ``[0, N)``, mismatched row count, non-finite values.
        """
        indices, embeddings = self.dist.gather_update(indices, embeddings)
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

    # ------------------------------------------------------------------ resumption

    def state_dict(self) -> dict[str, Any]:
        """O(1) position of the sampler: epoch, batches yielded, seed and configuration.

        Works with torchdata's ``StatefulDataLoader``, which calls it after every dispatched
        batch. The graph and the bank are not part of it: persist them with :meth:`save`.
        """
        epoch, position = self._epoch, self._resume_position
        if self._current_epoch is not None and self._position < len(self) and self._epoch == self._current_epoch + 1:
            epoch, position = self._current_epoch, self._position
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

        Raises:
            ValueError: if the state belongs to a sampler with another seed, size or batch size.
        """
        for key in ("seed", "num_instances", "global_batch_size"):
            if state.get(key) != getattr(self, key):
                raise ValueError(f"state {key}={state.get(key)!r} does not match this sampler's {getattr(self, key)!r}")
        self._epoch = check_int("state['epoch']", state["epoch"], low=0)
        self._resume_position = check_int("state['position']", state["position"], low=0, high=len(self))
        self._load_extra_state(state)

    def _extra_state(self) -> dict[str, Any]:
        return {}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        pass

    def _resumes_from_checkpoint(self) -> bool:
        """True when a loaded checkpoint holds the batches up to the resume position."""
        restored = self._restored_history
        return restored is not None and restored[0] == self._epoch and len(restored[1]) >= self._resume_position

    def save(self, path: str | os.PathLike) -> None:
        """Write a checkpoint (``.npz``): bank, graph, the current epoch's batches and the state.

        Together with the O(1) :meth:`state_dict` saved by the training loop (or torchdata's
        ``StatefulDataLoader``) at the same step, :meth:`load` resumes exactly: a run stopped
        mid-epoch continues with the batches the uninterrupted run would have yielded. A
        pending background build is waited for and saved too.
        """
        arrays: dict[str, np.ndarray] = {}
        if self.bank.embeddings is not None:
            arrays["bank_embeddings"] = self.bank.embeddings
        arrays["bank_seen"] = self.bank.seen
        arrays["bank_last_update"] = self.bank.last_update
        _pack_batches(arrays, "history", self._history)
        # Batches grown ahead with the current walk group: the uninterrupted run yields them
        # whatever happens to the graph meanwhile, so the resumed run must too.
        _pack_batches(arrays, "grown", [self._grown[i] for i in sorted(self._grown)])
        meta = {
            "format_version": _CHECKPOINT_VERSION,
            "class": type(self).__name__,
            "history_epoch": self._current_epoch,
            "grown_first": min(self._grown, default=None),
            "bank_updates": self.bank.updates,
            "state": self.state_dict(),
        }
        self._save_extra(arrays, meta)
        np.savez(path, meta=np.array(json.dumps(meta)), **arrays)

    def load(self, path: str | os.PathLike) -> None:
        """Restore a checkpoint written by :meth:`save` (call ``load_state_dict`` after it if the
        training loop saved its own, later-consumed position).

        Raises:
            ValueError: if the checkpoint is from another kind of sampler, size, batch size or seed.
        """
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            if meta.get("format_version") != _CHECKPOINT_VERSION or meta.get("class") != type(self).__name__:
                raise ValueError(f"{os.fspath(path)!r} is not a {type(self).__name__} checkpoint")
            self.bank.seen[:] = data["bank_seen"]
            self.bank.last_update[:] = data["bank_last_update"]
            self.bank.updates = meta["bank_updates"]
            if "bank_embeddings" in data:
                self.bank.embeddings = data["bank_embeddings"].astype(self.bank.dtype, copy=False)
            history = _unpack_batches(data, "history")
            grown = _unpack_batches(data, "grown") if "grown_offsets" in data else []
            first = meta.get("grown_first") or 0
            self._load_extra(data, meta)
        self.load_state_dict(meta["state"])
        if meta["history_epoch"] is not None:
            self._restored_history = (meta["history_epoch"], history, dict(enumerate(grown, start=first)))

    def _save_extra(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        pass

    def _load_extra(self, data: Any, meta: dict[str, Any]) -> None:
        pass

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_instances={self.num_instances}, batch_size={self.batch_size}, "
            f"replacement={self.replacement}, drop_last={self.drop_last}, seed={self.seed}, "
            f"world_size={self.dist.world_size})"
        )


def _pack_batches(arrays: dict[str, np.ndarray], name: str, batches: list[list[int]]) -> None:
    lengths = [len(batch) for batch in batches]
    arrays[f"{name}_indices"] = np.asarray([i for batch in batches for i in batch], dtype=np.int64)
    arrays[f"{name}_offsets"] = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)


def _unpack_batches(data: Any, name: str) -> list[list[int]]:
    offsets = data[f"{name}_offsets"].tolist()
    indices = data[f"{name}_indices"].tolist()
    return [indices[a:b] for a, b in zip(offsets[:-1], offsets[1:])]


def check_bool(name: str, value: Any) -> bool:
    """Return ``value`` if it is a bool (NumPy bools included), else raise ``TypeError``."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__} ({value!r})")
    return bool(value)
