"""Framework glue: the .sampler child, PyG's DataLoader, accelerate without set_epoch."""

import numpy as np
import torch
from lightning.fabric.utilities.data import _set_sampler_epoch
from torch.utils.data import DataLoader
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader as GraphDataLoader

from batchsampler import SAMPLERS, BatchSampler


def test_lightning_reaches_set_epoch_through_the_sampler_child():
    for sampler_class in SAMPLERS.values():
        sampler = sampler_class(100, 10, k=5, m=20)
        loader = DataLoader(range(100), batch_sampler=sampler)
        _set_sampler_epoch(loader, 7)
        assert sampler.epoch == 7
        assert len(sampler.sampler) == 100


def test_epoch_advances_without_set_epoch():
    sampler = BatchSampler(100, 10, k=5, m=20, embeddings=np.random.default_rng(0).standard_normal((100, 4)))
    loader = DataLoader(range(100), batch_sampler=sampler)
    epochs = [[b.tolist() for b in loader] for _ in range(3)]
    assert epochs[0] != epochs[1] != epochs[2] and sampler.epoch == 3


def test_pyg_dataloader_with_batch_sampler():
    generator = torch.Generator().manual_seed(0)
    graphs = [
        Data(x=torch.randn(n, 3, generator=generator), edge_index=torch.tensor([[0, 1], [1, 0]]), idx=i)
        for i, n in enumerate(torch.randint(2, 6, (50,), generator=generator).tolist())
    ]
    sampler = BatchSampler(graphs, 8, k=5, m=20, seed=0)
    loader = GraphDataLoader(graphs, batch_sampler=sampler)
    seen = []
    for batch in loader:
        assert batch.num_graphs == len(batch.idx) <= 8
        pooled = torch.zeros(batch.num_graphs, 3).index_add_(0, batch.batch, batch.x)
        sampler.update(batch.idx, pooled)
        seen.extend(batch.idx.tolist())
    assert sorted(seen) == list(range(50))
    assert sampler.refresh() is not None
    assert sorted(i for b in GraphDataLoader(graphs, batch_sampler=sampler) for i in b.idx.tolist()) == list(range(50))
