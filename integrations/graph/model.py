"""GIN encoder and projection head of unsupervised GraphCL."""

from __future__ import annotations

import torch
from torch import nn
from torch_geometric.nn import GINConv, global_add_pool

__all__ = ["GINEncoder", "GraphCLModel"]


class GINEncoder(nn.Module):
    """Graph Isomorphism Network with sum pooling; the graph embedding concatenates every
    layer's pooled output (GraphCL's unsupervised TU setting).

    Args:
        in_features: node feature size ``f``.
        hidden: hidden size per layer (GraphCL: 32).
        num_layers: GIN layers (GraphCL: 3 to 5).

    Shapes:
        ``forward(x [n, f], edge_index [2, e], batch [n]) -> [num_graphs, hidden * num_layers]``
    """

    def __init__(self, in_features: int, hidden: int = 32, num_layers: int = 3) -> None:
        super().__init__()
        if in_features < 1 or hidden < 1 or num_layers < 1:
            raise ValueError(f"in_features, hidden and num_layers must be >= 1, got {in_features}, {hidden}, {num_layers}")
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        for layer in range(num_layers):
            mlp = nn.Sequential(nn.Linear(in_features if layer == 0 else hidden, hidden), nn.ReLU(), nn.Linear(hidden, hidden))
            self.convs.append(GINConv(mlp))
            self.norms.append(nn.BatchNorm1d(hidden))
        self.out_features = hidden * num_layers

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        readouts = []
        for conv, norm in zip(self.convs, self.norms):
            x = norm(torch.relu(conv(x, edge_index)))
            readouts.append(global_add_pool(x, batch))
        return torch.cat(readouts, dim=1)


class GraphCLModel(nn.Module):
    """Encoder plus a two-layer projection head; ``embed`` gives the frozen features."""

    def __init__(self, in_features: int, hidden: int = 32, num_layers: int = 3) -> None:
        super().__init__()
        self.encoder = GINEncoder(in_features, hidden, num_layers)
        size = self.encoder.out_features
        self.head = nn.Sequential(nn.Linear(size, size), nn.ReLU(inplace=True), nn.Linear(size, size))

    def embed(self, data) -> torch.Tensor:
        """Graph embeddings ``[num_graphs, hidden * num_layers]`` of a PyG batch."""
        return self.encoder(data.x, data.edge_index, data.batch)

    def encode_and_project(self, data) -> tuple[torch.Tensor, torch.Tensor]:
        """Graph embeddings and projections, both ``[num_graphs, hidden * num_layers]``, of one
        forward pass: the projections are ``forward(data)``, computed from those embeddings,
        so gradients through either are those of :meth:`forward`."""
        features = self.embed(data)
        return features, self.head(features)

    def forward(self, data) -> torch.Tensor:
        """Projections ``[num_graphs, hidden * num_layers]`` used by the contrastive loss."""
        return self.head(self.embed(data))
