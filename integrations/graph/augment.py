"""GraphCL's graph augmentations (You et al., NeurIPS 2020), as pure functions of a generator.

Each takes a :class:`torch_geometric.data.Data` with ``x`` ``[n, f]`` and ``edge_index``
``[2, e]`` and returns a new graph with only ``x``, ``edge_index`` and ``y``; the input is
never modified.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch_geometric.data import Data
from torch_geometric.utils import subgraph as induced_subgraph

__all__ = ["AUGMENTATIONS", "augment_graph", "drop_nodes", "perturb_edges", "mask_attributes", "random_subgraph"]


def drop_nodes(graph: Data, ratio: float, generator: torch.Generator) -> Data:
    """Remove ``ratio`` of the nodes (at least one node stays) and their edges."""
    n = graph.num_nodes
    keep_count = max(1, n - int(n * ratio))
    keep = torch.randperm(n, generator=generator)[:keep_count].sort().values
    return _induced(graph, keep)


def perturb_edges(graph: Data, ratio: float, generator: torch.Generator) -> Data:
    """Remove ``ratio`` of the edges and add as many random ones."""
    n, edges = graph.num_nodes, graph.edge_index
    count = int(edges.shape[1] * ratio)
    keep = torch.randperm(edges.shape[1], generator=generator)[: edges.shape[1] - count]
    added = torch.randint(n, (2, count), generator=generator)
    return _graph(graph.x, torch.cat([edges[:, keep], added], dim=1), graph.y)


def mask_attributes(graph: Data, ratio: float, generator: torch.Generator) -> Data:
    """Replace the features of ``ratio`` of the nodes by Gaussian noise (as in GraphCL's code)."""
    n = graph.num_nodes
    count = int(n * ratio)
    x = graph.x.clone()
    chosen = torch.randperm(n, generator=generator)[:count]
    x[chosen] = torch.randn((count, graph.x.shape[1]), generator=generator) * 0.5 + 0.5
    return _graph(x, graph.edge_index, graph.y)


def random_subgraph(graph: Data, ratio: float, generator: torch.Generator) -> Data:
    """Keep the ``1 - ratio`` share of nodes reached by a random breadth-first expansion."""
    n = graph.num_nodes
    target = max(1, int(n * (1 - ratio)))
    neighbours = [[] for _ in range(n)]
    for a, b in graph.edge_index.t().tolist():
        neighbours[a].append(b)
    start = int(torch.randint(n, (1,), generator=generator))
    chosen, frontier = {start}, [start]
    while len(chosen) < target:
        candidates = sorted({b for a in frontier for b in neighbours[a]} - chosen)
        if not candidates:  # the component is exhausted: jump to a random unchosen node
            rest = sorted(set(range(n)) - chosen)
            candidates = [rest[int(torch.randint(len(rest), (1,), generator=generator))]]
        pick = candidates[int(torch.randint(len(candidates), (1,), generator=generator))]
        chosen.add(pick)
        frontier.append(pick)
    return _induced(graph, torch.tensor(sorted(chosen)))


def _induced(graph: Data, keep: torch.Tensor) -> Data:
    edge_index, _ = induced_subgraph(keep, graph.edge_index, relabel_nodes=True, num_nodes=graph.num_nodes)
    return _graph(graph.x[keep], edge_index, graph.y)


def _graph(x: torch.Tensor, edge_index: torch.Tensor, y: torch.Tensor) -> Data:
    # Every view has the same attributes (edge attributes are dropped: perturbed edges have
    # none, and the encoder does not use them), so that views of any kind collate together.
    return Data(x=x, edge_index=edge_index, y=y)


AUGMENTATIONS: dict[str, Callable[[Data, float, torch.Generator], Data]] = {
    "node_drop": drop_nodes,
    "edge_perturb": perturb_edges,
    "attr_mask": mask_attributes,
    "subgraph": random_subgraph,
}
"""The four augmentations by name."""


def augment_graph(graph: Data, name: str, ratio: float, generator: torch.Generator) -> Data:
    """Apply augmentation ``name`` with strength ``ratio`` in ``[0, 1)``.

    Raises:
        ValueError: on an unknown name or a ratio outside ``[0, 1)``.
    """
    if name not in AUGMENTATIONS:
        raise ValueError(f"name must be one of {sorted(AUGMENTATIONS)}, got {name!r}")
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"ratio must be in [0, 1), got {ratio}")
    return AUGMENTATIONS[name](graph, ratio, generator)
