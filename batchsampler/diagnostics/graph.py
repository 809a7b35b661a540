"""What the proximity graph, the walk and the embedding bank look like.

* :func:`summarize_graph`: in-degree distribution (hubs and nodes nobody links to), weakly
  connected components (a walk cannot leave its component except by re-seeding), and, given
  labels, how many neighbours share the anchor's class, next to the rule of thumb
  :func:`expected_same_label_neighbors`.
* :func:`summarize_walk`: the walk counters of one epoch, normalised per batch and per index.
* :func:`summarize_staleness`: how many bank updates ago each embedding was written.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..bank import EmbeddingBank
from ..graph import ProximityGraph
from ..walk import WalkStats

__all__ = [
    "GraphSummary",
    "expected_same_label_neighbors",
    "summarize_graph",
    "summarize_staleness",
    "summarize_walk",
]


@dataclass
class GraphSummary:
    """Statistics of one :class:`~batchsampler.ProximityGraph`."""

    num_nodes: int
    num_edges: int
    out_degree_mean: float
    in_degree_min: int
    in_degree_q10: float
    in_degree_q50: float
    in_degree_q90: float
    in_degree_max: int
    no_in_edge_share: float
    """Share of nodes that are nobody's neighbour (a walk reaches them only as a seed)."""
    num_components: int
    """Weakly connected components."""
    largest_component_share: float
    """Share of the nodes in the largest weakly connected component."""
    smallest_component_size: int
    mean_edge_similarity: float | None = None
    """Mean stored cosine similarity of the edges (``None`` without scores; NaN scores skipped)."""
    neighbor_same_label_rate: float | None = None
    """Share of edges whose two ends have the same label (``None`` without labels)."""
    same_label_neighbors: float | None = None
    """Mean number of out-neighbours sharing the node's label (``None`` without labels)."""
    expected_same_label_neighbors: float | None = None
    """The rule of thumb ``min(k, p * m)`` averaged over nodes (``None`` without labels or
    without ``k``/``m`` in the graph's ``build_params``)."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def expected_same_label_neighbors(labels: Any, k: int, m: int) -> float:
    """Rule of thumb: a node whose class has share ``p`` keeps about ``min(k, p * m)`` same-class
    neighbours, averaged over nodes.

    Of ``m`` random candidates about ``p * m`` share the anchor's class; if the embedding ranks
    them above all others, the top ``k`` hold ``min(k, p * m)`` of them. Real embeddings rank
    imperfectly, so this is an upper estimate that is close when classes are well separated.
    ``p`` is the share of the *other* instances in the node's class, ``(n_c - 1) / (N - 1)``,
    and ``m`` is capped at ``N - 1`` (exact kNN).

    Args:
        labels: ``[N]`` labels.
        k: out-degree, ``>= 1``.
        m: candidates per node, ``>= k``.

    Raises:
        ValueError: on fewer than two labels, ``k < 1`` or ``m < k``.
    """
    labels = np.asarray(labels).reshape(-1)
    if labels.size < 2:
        raise ValueError(f"labels must have at least 2 entries, got {labels.size}")
    if k < 1 or m < k:
        raise ValueError(f"k must be >= 1 and m >= k, got k={k}, m={m}")
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    share = (counts[inverse] - 1) / (labels.size - 1)
    return float(np.minimum(k, share * min(m, labels.size - 1)).mean())


def summarize_graph(graph: ProximityGraph, labels: Any = None) -> GraphSummary:
    """Degree, component and label statistics of ``graph``.

    Args:
        graph: the graph (``sampler.graph``).
        labels: optional ``[N]`` labels.

    Raises:
        TypeError: if ``graph`` is not a :class:`~batchsampler.ProximityGraph`.
        ValueError: if ``labels`` does not have ``N`` entries.
    """
    from scipy.sparse.csgraph import connected_components

    if not isinstance(graph, ProximityGraph):
        raise TypeError(f"graph must be a ProximityGraph, got {type(graph).__name__}")
    n = graph.num_nodes
    in_degrees = graph.in_degrees()
    q10, q50, q90 = np.quantile(in_degrees, [0.1, 0.5, 0.9]).tolist()
    num_components, component = connected_components(graph.to_scipy(weighted=False), directed=True, connection="weak")
    sizes = np.bincount(component, minlength=num_components)
    summary = GraphSummary(
        num_nodes=n,
        num_edges=graph.num_edges,
        out_degree_mean=graph.num_edges / n,
        in_degree_min=int(in_degrees.min()),
        in_degree_q10=q10,
        in_degree_q50=q50,
        in_degree_q90=q90,
        in_degree_max=int(in_degrees.max()),
        no_in_edge_share=float((in_degrees == 0).mean()),
        num_components=int(num_components),
        largest_component_share=float(sizes.max() / n),
        smallest_component_size=int(sizes.min()),
    )
    if graph.scores is not None and np.isfinite(graph.scores).any():
        summary.mean_edge_similarity = float(np.nanmean(graph.scores))
    if labels is not None:
        labels = np.asarray(labels).reshape(-1)
        if labels.shape[0] != n:
            raise ValueError(f"labels must have {n} entries, got {labels.shape[0]}")
        sources = np.repeat(np.arange(n), graph.degrees)
        same = labels[sources] == labels[graph.indices]
        summary.neighbor_same_label_rate = float(same.mean()) if same.size else None
        summary.same_label_neighbors = float(same.sum() / n)
        k, m = graph.build_params.get("k"), graph.build_params.get("m")
        if k is not None and m is not None and m >= k >= 1:
            summary.expected_same_label_neighbors = expected_same_label_neighbors(labels, int(k), int(m))
    return summary


def summarize_walk(stats: WalkStats, num_batches: int, num_indices: int) -> dict[str, float | int]:
    """One epoch's walk counters with per-batch and per-index rates.

    Returns:
        ``steps``, ``restarts``, ``reseeds`` (counts), ``steps_per_index`` (walk moves per
        collected index; 0 for uniform batches), ``restart_share`` (restarts / steps) and
        ``reseeds_per_batch`` (fresh seeds after fruitless steps, per batch).

    Raises:
        TypeError: if ``stats`` is not a :class:`~batchsampler.WalkStats`.
    """
    if not isinstance(stats, WalkStats):
        raise TypeError(f"stats must be a WalkStats, got {type(stats).__name__}")
    return {
        "steps": int(stats.steps),
        "restarts": int(stats.restarts),
        "reseeds": int(stats.reseeds),
        "steps_per_index": stats.steps / num_indices if num_indices else 0.0,
        "restart_share": stats.restarts / stats.steps if stats.steps else 0.0,
        "reseeds_per_batch": stats.reseeds / num_batches if num_batches else 0.0,
    }


def summarize_staleness(bank: EmbeddingBank) -> dict[str, float | int] | None:
    """Age of the bank's rows, in :meth:`~batchsampler.EmbeddingBank.update` calls.

    Returns:
        ``None`` before the first update, else ``seen_share`` (rows written at least once),
        ``mean``, ``q50``, ``q90`` and ``max`` of the staleness of the seen rows, and
        ``updates`` (the bank's clock).

    Raises:
        TypeError: if ``bank`` is not an :class:`~batchsampler.EmbeddingBank`.
    """
    if not isinstance(bank, EmbeddingBank):
        raise TypeError(f"bank must be an EmbeddingBank, got {type(bank).__name__}")
    if bank.num_seen == 0:
        return None
    age = bank.staleness()[bank.seen]
    q50, q90 = np.quantile(age, [0.5, 0.9]).tolist()
    return {
        "seen_share": bank.num_seen / bank.num_instances,
        "mean": float(age.mean()),
        "q50": q50,
        "q90": q90,
        "max": int(age.max()),
        "updates": int(bank.updates),
    }
