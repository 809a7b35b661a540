import copy

import numpy as np
import pytest
import torch
from torch_geometric.loader import DataLoader

from batchsampler.integrations.graph import GraphCLModel, svm_accuracy


def test_model_shapes(mutag):
    model = GraphCLModel(mutag.num_node_features, hidden=16, num_layers=4)
    batch = next(iter(DataLoader([mutag[i] for i in range(10)], batch_size=10)))
    assert model.embed(batch).shape == (10, 64) and model(batch).shape == (10, 64)
    with pytest.raises(ValueError, match="must be >= 1"):
        GraphCLModel(0)


def test_encode_and_project_is_one_forward_pass_with_the_gradients_of_forward(mutag):
    torch.manual_seed(0)
    model = GraphCLModel(mutag.num_node_features, hidden=8, num_layers=2).train()
    twin = copy.deepcopy(model)
    batch = next(iter(DataLoader([mutag[i] for i in range(10)], batch_size=10)))
    features, projections = model.encode_and_project(batch)
    expected = twin(batch)
    assert features.shape == (10, 16) and torch.equal(projections, expected)
    assert torch.equal(model.encoder.norms[0].running_mean, twin.encoder.norms[0].running_mean)
    projections.square().sum().backward()
    expected.square().sum().backward()
    for (name, p), q in zip(model.named_parameters(), twin.parameters()):
        assert torch.equal(p.grad, q.grad), name
    with torch.no_grad():
        assert torch.equal(model.eval().encode_and_project(batch)[0], model.embed(batch))


def test_svm_accuracy_separates_separable_data_and_not_noise():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 60)
    separable = rng.standard_normal((120, 5)) + labels[:, None] * 4
    assert svm_accuracy(separable, labels)[0] > 0.95
    noise = rng.standard_normal((120, 5))
    assert svm_accuracy(noise, labels)[0] < 0.75
    with pytest.raises(ValueError, match="embeddings must be"):
        svm_accuracy(noise[:10], labels)
    with pytest.raises(ValueError, match="at least folds=10 members"):
        svm_accuracy(noise[:15], np.r_[np.zeros(10), np.ones(5)])
