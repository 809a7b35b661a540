"""Baseline samplers for comparison: uniform batches and the paper's kNN sampler.

Both take the same constructor arguments as :class:`~batchsampler.BatchSampler` and offer the
same ``update`` / ``refresh`` methods, so scripts can swap samplers by name.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from ._validation import check_int, num_instances_of
from .base import BaseBatchSampler, GraphBatchSampler
from .graph import ProximityGraph
from .walk import neighborhood_batches

__all__ = ["UniformBatchSampler", "KNNBatchSampler"]


class UniformBatchSampler(BaseBatchSampler):
    """Shuffled batches, like ``DataLoader(shuffle=True)``, with seeded, per-epoch order.

    Args:
        data, batch_size, replacement, drop_last, seed, embeddings: as in
            :class:`~batchsampler.base.BaseBatchSampler`. ``embeddings`` and later
            :meth:`update` calls are stored in :attr:`bank` (e.g. for diagnostics) but do not
            change the batches.
        **unused: ``k``, ``m``, ``restart_prob`` and other options of the graph samplers are
            accepted and ignored, so that the samplers are interchangeable in scripts.
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
        **unused: Any,
    ) -> None:
        super().__init__(
            data, batch_size, replacement=replacement, drop_last=drop_last, seed=seed, embeddings=embeddings
        )
        self._load_initial_embeddings()

    def _batches(self, rng: np.random.Generator) -> Iterator[list[int]]:
        return self._uniform_batches(rng)


class KNNBatchSampler(GraphBatchSampler):
    """The paper's kNN sampler: a random anchor and its nearest unused neighbours.

    The graph is the exact cosine kNN graph (``m`` is ignored); a batch is a random unused
    anchor plus its nearest unused neighbours in rank order, continued breadth-first through
    neighbours of neighbours when ``k < B - 1`` (see :func:`batchsampler.walk.neighborhood_batches`).
    The paper shows this *hurts* contrastive learning through false negatives; it is here for
    comparison.

    Args:
        k: neighbours per instance (default 100), ``1 <= k < N``.
        max_fruitless_steps: used neighbours in a row before a fresh anchor (default 64).
        Others as in :class:`~batchsampler.BatchSampler`; ``m`` and ``restart_prob`` are
        accepted and ignored.
    """

    def __init__(
        self,
        data: Any,
        batch_size: int,
        *,
        k: int = 100,
        m: int | None = None,
        replacement: bool = False,
        drop_last: bool = False,
        seed: int = 0,
        embeddings: Any = None,
        max_fruitless_steps: int = 64,
        num_threads: int | None = None,
        **unused: Any,
    ) -> None:
        super().__init__(
            data, batch_size, k=k, m=num_instances_of("data", data), num_threads=num_threads,
            replacement=replacement, drop_last=drop_last, seed=seed, embeddings=embeddings,
        )
        self.max_fruitless_steps = check_int("max_fruitless_steps", max_fruitless_steps, low=1)
        self._load_initial_embeddings()

    def _graph_batches(self, graph: ProximityGraph, rng: np.random.Generator) -> Iterator[list[int]]:
        return neighborhood_batches(
            graph, self.batch_size, rng, replacement=self.replacement, drop_last=self.drop_last,
            max_fruitless_steps=self.max_fruitless_steps, stats=self.walk_stats,
        )
