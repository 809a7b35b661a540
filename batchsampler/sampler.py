"""BatchSampler: mini-batches of hard-to-distinguish instances by random walk with restart."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from ._validation import check_int, check_probability
from .base import GraphBatchSampler
from .graph import ProximityGraph
from .walk import random_walk_batches

__all__ = ["BatchSampler"]


class BatchSampler(GraphBatchSampler):
    r"""Batches of hard negatives that are not false negatives (Yang et al., KDD 2023).

    A :class:`~batchsampler.ProximityGraph` links every instance to the ``k`` most similar of
    ``m`` random candidates; each batch is collected by a random walk with restart from a random
    seed (see :mod:`batchsampler.walk`). Before the first graph exists (no embeddings yet),
    batches are uniform: train a warm-up epoch, feeding embeddings back with :meth:`update`,
    then call :meth:`refresh`.

    Example::

        sampler = BatchSampler(len(dataset), batch_size=256, seed=0)
        loader = DataLoader(dataset, batch_sampler=sampler)
        for epoch in range(epochs):
            for indices, x in loader:           # the dataset returns (index, sample)
                z = model(x)
                sampler.update(indices, z)     # cheap: copies to the CPU bank
                ...
            sampler.refresh()                  # rebuild the graph from fresh embeddings

    Args:
        data: the number of instances ``N``, or a sized dataset.
        batch_size: ``B``, in ``[1, N]``.
        k: out-degree of the graph (default 100, the paper's K), ``1 <= k < N``.
        m: random candidates per node (default 1000, the paper's M), ``m >= k``. Smaller ``m``
            gives easier batches with fewer false negatives; ``m >= N - 1`` is the kNN graph.
        restart_prob: alpha in ``[0, 1]`` (default 0.2). Larger keeps batches tighter (harder).
        replacement: ``False``: every index exactly once per epoch; ``True``: independent
            batches of ``B`` distinct indices (closer to the authors' code).
        drop_last: drop the smaller last batch (``N // B`` batches instead of ``ceil(N / B)``).
        seed: non-negative int; same (seed, epoch, embeddings) gives the same batches.
        embeddings: optional ``[N, d]`` initial embeddings; the graph is built at construction.
        max_fruitless_steps: steps without a new instance before the walk re-seeds (default 64).
        symmetrize: make the graph undirected before walking.
        num_threads: FAISS / torch threads for graph building (``None``: unchanged).

    Raises:
        ValueError: ``batch_size`` outside ``[1, N]``, ``k < 1``, ``k >= N``, ``m < k``,
            ``restart_prob`` outside ``[0, 1]``, ``max_fruitless_steps < 1``, or bad
            ``embeddings`` (non-2-D, NaN/inf, row count other than ``N``).
        TypeError: non-integer sizes or non-bool flags.
    """

    def __init__(
        self,
        data: Any,
        batch_size: int,
        *,
        k: int = 100,
        m: int = 1000,
        restart_prob: float = 0.2,
        replacement: bool = False,
        drop_last: bool = False,
        seed: int = 0,
        embeddings: Any = None,
        max_fruitless_steps: int = 64,
        symmetrize: bool = False,
        num_threads: int | None = None,
    ) -> None:
        super().__init__(
            data, batch_size, k=k, m=m, num_threads=num_threads, replacement=replacement,
            drop_last=drop_last, seed=seed, embeddings=embeddings,
        )
        self.restart_prob = check_probability("restart_prob", restart_prob)
        self.max_fruitless_steps = check_int("max_fruitless_steps", max_fruitless_steps, low=1)
        self.symmetrize = bool(symmetrize)
        self._load_initial_embeddings()

    @classmethod
    def from_graph(cls, graph: ProximityGraph, batch_size: int, **kwargs: Any) -> BatchSampler:
        """A sampler that walks an existing ``graph`` (built offline, or loaded from a file).

        ``k`` and ``m`` default to the graph's build parameters; they only matter for later
        :meth:`refresh` calls. Other keyword arguments as in the constructor.
        """
        if not isinstance(graph, ProximityGraph):
            raise TypeError(f"graph must be a ProximityGraph, got {type(graph).__name__}")
        k = graph.build_params.get("k") or max(1, min(int(graph.degrees.max()), graph.num_nodes - 1))
        kwargs.setdefault("k", k)
        kwargs.setdefault("m", max(graph.build_params.get("m") or kwargs["k"], kwargs["k"]))
        sampler = cls(graph.num_nodes, batch_size, **kwargs)
        sampler.set_graph(graph)
        return sampler

    def _build_graph(self, seed: np.random.SeedSequence) -> ProximityGraph:
        graph = super()._build_graph(seed)
        return graph.symmetrize() if self.symmetrize else graph

    def _graph_batches(self, graph: ProximityGraph, rng: np.random.Generator) -> Iterator[list[int]]:
        return random_walk_batches(
            graph, self.batch_size, self.restart_prob, rng,
            replacement=self.replacement, drop_last=self.drop_last,
            max_fruitless_steps=self.max_fruitless_steps, stats=self.walk_stats,
        )

    def __repr__(self) -> str:
        return (
            f"{super().__repr__()[:-1]}, k={self.k}, m={self.m}, restart_prob={self.restart_prob}, "
            f"graph_version={self.graph_version})"
        )
