"""Shared base of all batch samplers: epochs, seeding, length, the embedding bank, refresh.

Every sampler of the package is a ``torch.utils.data.Sampler[list[int]]`` meant for
``DataLoader(dataset, batch_sampler=sampler)``, and all of them take the same constructor
arguments and offer the same :meth:`~BaseBatchSampler.update` / :meth:`~BaseBatchSampler.refresh`
methods, so that scripts can swap them freely.
"""

from __future__ import annotations

import logging
import time
from abc import abstractmethod
from collections.abc import Iterator
from typing import Any

import numpy as np
from torch.utils.data import Sampler

from ._validation import check_int, num_instances_of
from .bank import EmbeddingBank
from .graph import ProximityGraph
from .walk import WalkStats, num_batches

__all__ = ["BaseBatchSampler", "GraphBatchSampler"]

logger = logging.getLogger(__name__)

# Independent random streams derived from the user's seed: SeedSequence([seed, stream, i]).
_EPOCH_STREAM = 0
_GRAPH_STREAM = 1


class BaseBatchSampler(Sampler[list[int]]):
    """Base class: yields lists of ``batch_size`` dataset indices, one epoch per iteration.

    Args:
        data: the number of instances ``N``, or a sized dataset (``len(data)`` is used).
        batch_size: ``B``, in ``[1, N]``.
        replacement: ``False`` (default): every index exactly once per epoch.
            ``True``: batches are independent (indices unique within a batch only) and all
            have exactly ``B`` indices.
        drop_last: drop the last batch if it would be smaller than ``B``. Either way the
            epoch has ``N // B`` (drop_last) or ``ceil(N / B)`` batches.
        seed: non-negative int; the same (seed, epoch, graph) gives the same batches.
        embeddings: optional ``[N, d]`` initial embeddings (array or tensor); when given the
            bank is filled and :meth:`refresh` is called at construction.

    Epochs: each ``iter(sampler)`` uses the current epoch and then advances it by one, so
    successive epochs differ even if nobody calls :meth:`set_epoch`; calling ``set_epoch(e)``
    before an epoch (as with ``DistributedSampler``) selects epoch ``e`` explicitly.

    Raises:
        TypeError: on a non-integer ``batch_size`` or ``seed``, or ``data`` that has no length.
        ValueError: if ``batch_size`` is outside ``[1, N]``, ``seed`` is negative, or
            ``embeddings`` do not have ``N`` rows (see :meth:`update` for more).
    """

    def __init__(
        self,
        data: Any,
        batch_size: int,
        *,
        replacement: bool = False,
        drop_last: bool = False,
        seed: int = 0,
        embeddings: Any = None,
    ) -> None:
        self.num_instances = num_instances_of("data", data)
        self.batch_size = check_int("batch_size", batch_size, low=1)
        if self.batch_size > self.num_instances:
            raise ValueError(
                f"batch_size must be <= the number of instances ({self.num_instances}), got {self.batch_size}"
            )
        self.replacement = _check_bool("replacement", replacement)
        self.drop_last = _check_bool("drop_last", drop_last)
        self.seed = check_int("seed", seed, low=0)
        self.bank = EmbeddingBank(self.num_instances)
        self.walk_stats = WalkStats()
        self._epoch = 0
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
        self.refresh()

    # ------------------------------------------------------------------ epochs

    @property
    def epoch(self) -> int:
        """The epoch the next ``iter(sampler)`` will produce."""
        return self._epoch

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch of the next iteration (``DistributedSampler`` convention)."""
        self._epoch = check_int("epoch", epoch, low=0)

    def __len__(self) -> int:
        return num_batches(self.num_instances, self.batch_size, self.drop_last)

    def __iter__(self) -> Iterator[list[int]]:
        epoch = self._epoch
        self._epoch += 1
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, _EPOCH_STREAM, epoch]))
        self.walk_stats = WalkStats()
        return self._batches(rng)

    @abstractmethod
    def _batches(self, rng: np.random.Generator) -> Iterator[list[int]]:
        """One epoch of batches drawn with ``rng``."""

    def _uniform_batches(self, rng: np.random.Generator) -> Iterator[list[int]]:
        n, b = self.num_instances, self.batch_size
        count = len(self)
        if self.replacement:
            for _ in range(count):
                yield rng.choice(n, size=b, replace=False).tolist()
            return
        order = rng.permutation(n)
        for i in range(count):
            yield order[i * b : (i + 1) * b].tolist()

    # ------------------------------------------------------------------ training-time service

    def update(self, indices: Any, embeddings: Any) -> None:
        """Store fresh embeddings of ``indices`` (e.g. from the training forward pass).

        Args:
            indices: ``[n]`` dataset indices of the batch (tensor, array or list).
            embeddings: ``[n, d]`` embeddings (tensor on any device, or array); detached and
                copied to CPU float32.

        Raises:
            ValueError: on indices outside ``[0, N)``, mismatched row count, non-finite values.
        """
        self.bank.update(indices, embeddings)

    def refresh(self) -> ProximityGraph | None:
        """Rebuild whatever the sampler derives from the bank (no-op here); returns the graph."""
        return None

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_instances={self.num_instances}, batch_size={self.batch_size}, "
            f"replacement={self.replacement}, drop_last={self.drop_last}, seed={self.seed})"
        )


class GraphBatchSampler(BaseBatchSampler):
    """Base of samplers that walk a :class:`ProximityGraph` built from the embedding bank.

    Until the first successful :meth:`refresh` (no embeddings yet: warm-up) batches are uniform.

    Args:
        k: out-degree of the graph, ``1 <= k < N``.
        m: candidates per node, ``m >= k`` (``m >= N - 1``: exact kNN graph).
        num_threads: FAISS / torch threads while building the graph (``None``: unchanged).
        **kwargs: see :class:`BaseBatchSampler`.
    """

    def __init__(self, data: Any, batch_size: int, *, k: int, m: int, num_threads: int | None = None, **kwargs: Any):
        super().__init__(data, batch_size, **kwargs)
        self.k = check_int("k", k, low=1)
        self.m = check_int("m", m, low=1)
        if self.k >= self.num_instances:
            raise ValueError(f"k must be < the number of instances ({self.num_instances}), got k={self.k}")
        if self.m < self.k:
            raise ValueError(f"m must be >= k, got m={self.m} < k={self.k}")
        self.num_threads = None if num_threads is None else check_int("num_threads", num_threads, low=1)
        self.graph: ProximityGraph | None = None
        self.graph_version = 0

    def refresh(self) -> ProximityGraph | None:
        """Rebuild the graph from the bank, synchronously; returns it (or ``None`` if impossible).

        Rows never updated are kept out of the similarity search and get random out-edges
        (see ``mask`` in :meth:`ProximityGraph.build`). With ``k`` or fewer rows seen there is
        no graph to build: a warning is logged and the previous graph (or uniform warm-up
        batches) stays in use.
        """
        seen = self.bank.num_seen
        if seen <= self.k:
            logger.warning("refresh skipped: %d instances seen, need more than k=%d", seen, self.k)
            return self.graph
        seed = np.random.SeedSequence([self.seed, _GRAPH_STREAM, self.graph_version])
        start = time.perf_counter()
        self.set_graph(self._build_graph(seed))
        logger.info(
            "graph v%d built in %.2fs (%d nodes, %d seen)",
            self.graph_version, time.perf_counter() - start, self.num_instances, seen,
        )
        return self.graph

    def set_graph(self, graph: ProximityGraph) -> None:
        """Walk ``graph`` from the next epoch on (e.g. one built offline or loaded from disk).

        Raises:
            TypeError: if ``graph`` is not a :class:`ProximityGraph`.
            ValueError: if it does not have ``N`` nodes.
        """
        if not isinstance(graph, ProximityGraph):
            raise TypeError(f"graph must be a ProximityGraph, got {type(graph).__name__}")
        if graph.num_nodes != self.num_instances:
            raise ValueError(f"graph must have {self.num_instances} nodes, got {graph.num_nodes}")
        self.graph = graph
        self.graph_version += 1

    def _build_graph(self, seed: np.random.SeedSequence) -> ProximityGraph:
        mask = None if self.bank.seen.all() else self.bank.seen
        return ProximityGraph.build(
            self.bank.embeddings, self.k, self.m, seed=seed, mask=mask, num_threads=self.num_threads
        )

    def _batches(self, rng: np.random.Generator) -> Iterator[list[int]]:
        if self.graph is None:
            return self._uniform_batches(rng)
        return self._graph_batches(self.graph, rng)

    @abstractmethod
    def _graph_batches(self, graph: ProximityGraph, rng: np.random.Generator) -> Iterator[list[int]]:
        """One epoch of batches from ``graph``."""


def _check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__} ({value!r})")
    return bool(value)
