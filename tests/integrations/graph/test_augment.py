import pytest
import torch
from torch_geometric.data import Data

from batchsampler.integrations.graph import AUGMENTATIONS, augment_graph


def _cycle(n=10, features=3):
    edges = torch.tensor([[i, (i + 1) % n] for i in range(n)] + [[(i + 1) % n, i] for i in range(n)]).t()
    return Data(x=torch.arange(n * features, dtype=torch.float32).view(n, features), edge_index=edges, y=torch.tensor([1]))


@pytest.mark.parametrize("name", sorted(AUGMENTATIONS))
def test_augmentations_return_valid_new_graphs(name):
    graph = _cycle()
    before = (graph.x.clone(), graph.edge_index.clone())
    out = augment_graph(graph, name, 0.2, torch.Generator().manual_seed(0))
    assert torch.equal(graph.x, before[0]) and torch.equal(graph.edge_index, before[1])  # input untouched
    assert out.x.shape[0] == out.num_nodes and out.x.shape[1] == 3
    assert out.edge_index.numel() == 0 or int(out.edge_index.max()) < out.num_nodes
    again = augment_graph(graph, name, 0.2, torch.Generator().manual_seed(0))
    assert torch.equal(out.x, again.x) and torch.equal(out.edge_index, again.edge_index)


def test_strengths():
    graph = _cycle(10)
    generator = torch.Generator().manual_seed(1)
    assert augment_graph(graph, "node_drop", 0.2, generator).num_nodes == 8
    assert augment_graph(graph, "subgraph", 0.2, generator).num_nodes == 8
    perturbed = augment_graph(graph, "edge_perturb", 0.2, generator)
    assert perturbed.edge_index.shape[1] == 20
    kept = {tuple(e) for e in perturbed.edge_index.t().tolist()} & {tuple(e) for e in graph.edge_index.t().tolist()}
    assert len(kept) >= 16
    masked = augment_graph(graph, "attr_mask", 0.2, generator)
    assert (masked.x != graph.x).any(dim=1).sum() == 2


def test_subgraph_is_connected_when_possible():
    out = augment_graph(_cycle(10), "subgraph", 0.5, torch.Generator().manual_seed(2))
    # 5 consecutive nodes of a cycle induce a path: 4 undirected edges.
    assert out.num_nodes == 5 and out.edge_index.shape[1] == 8


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"^name must be one of"):
        augment_graph(_cycle(), "rotate", 0.2, torch.Generator())
    with pytest.raises(ValueError, match=r"^ratio must be in"):
        augment_graph(_cycle(), "node_drop", 1.0, torch.Generator())
