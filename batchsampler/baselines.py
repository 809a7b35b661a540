"""Baseline samplers for comparison: uniform batches and the paper's kNN sampler.

Both take the same constructor arguments as :class:`~batchsampler.BatchSampler` and offer the
same ``update`` / ``refresh`` methods, so scripts can swap samplers by name.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._validation import check_int, num_instances_of
from .base import BaseBatchSampler
from .collect import neighborhood_batch
from .graph import ProximityGraph
from .graph_sampler import GraphBatchSampler

__all__ = ["UniformBatchSampler", "KNNBatchSampler"]


class UniformBatchSampler(BaseBatchSampler):
    """Shuffled batches, like ``DataLoader(shuffle=True)``, with seeded, per-epoch order.

    Args:
        data, batch_size, replacement, drop_last, seed, embeddings, distributed: as in
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
        distributed: bool | None = None,
        **unused: Any,
    ) -> None:
        super().__init__(
            data, batch_size, replacement=replacement, drop_last=drop_last, seed=seed,
            embeddings=embeddings, distributed=distributed,
        )
        self._finish_init()

    def _collect(self, used: np.ndarray, size: int, rng: np.random.Generator) -> list[int]:
        return self._uniform(used, size, rng)


class KNNBatchSampler(GraphBatchSampler):
    """The paper's kNN sampler: a random anchor and its nearest unused neighbours.

    The graph is the exact cosine kNN graph (``m`` is ignored; ``backend="hnsw"`` or ``"ivf"``
    approximates it where an exact graph, ``O(N^2 d)``, is too slow); a batch is a random unused
    anchor plus its nearest unused neighbours in rank order, continued breadth-first through
    neighbours of neighbours when ``k < B - 1`` (see :func:`batchsampler.walk.neighborhood_batches`).
    The paper shows this *hurts* contrastive learning through false negatives; it is here for
    comparison.

    Args:
        k: neighbours per instance (default 100), ``1 <= k < N``.
        max_fruitless_steps: used neighbours in a row before a fresh anchor (default 64).
        refresh_every, warmup_epochs, background, swap_delay, num_threads, backend,
            index_params, device: the refresh policy, graph construction and bank device of
            :class:`~batchsampler.graph_sampler.GraphBatchSampler` (``backend`` default ``"exact"``).
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
        refresh_every: int | None = None,
        warmup_epochs: int = 1,
        background: bool = True,
        swap_delay: int = 8,
        num_threads: int | None = None,
        backend: str = "exact",
        index_params: dict[str, Any] | None = None,
        distributed: bool | None = None,
        device: Any = None,
        **unused: Any,
    ) -> None:
        super().__init__(
            data, batch_size, k=k, m=num_instances_of("data", data), refresh_every=refresh_every,
            warmup_epochs=warmup_epochs, background=background, swap_delay=swap_delay,
            num_threads=num_threads, backend=backend, index_params=index_params, replacement=replacement,
            drop_last=drop_last, seed=seed, embeddings=embeddings, distributed=distributed, device=device,
        )
        self.max_fruitless_steps = check_int("max_fruitless_steps", max_fruitless_steps, low=1)
        self._finish_init()

    def _rank_invariants(self) -> dict[str, Any]:
        return {**super()._rank_invariants(), "max_fruitless_steps": self.max_fruitless_steps}

    def _collect_from_graph(
        self, graph: ProximityGraph, used: np.ndarray, size: int, rng: np.random.Generator
    ) -> list[int]:
        return neighborhood_batch(
            graph, used, size, rng, max_fruitless_steps=self.max_fruitless_steps, stats=self.walk_stats
        )
