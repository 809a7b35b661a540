import copy

import numpy as np
import pytest
import torch

from batchsampler.integrations.vision import (
    SimCLRModel,
    SmallResNet,
    embed_images,
    knn_monitor,
    linear_probe,
)


@pytest.mark.parametrize("channels,size,blocks", [(1, 28, (1, 1, 1, 1)), (3, 32, (2, 2, 2, 2)), (3, 16, (1, 1))])
def test_resnet_feature_sizes(channels, size, blocks):
    net = SmallResNet(channels, width=4, blocks=blocks)
    out = net(torch.rand(2, channels, size, size))
    assert out.shape == (2, 4 * 2 ** (len(blocks) - 1)) == (2, net.out_features)


def test_simclr_model_heads_and_normalisation():
    torch.manual_seed(0)
    model = SimCLRModel(1, width=4, blocks=(1, 1), projection_dim=5, mean=[0.3], std=[0.2]).eval()
    x = torch.rand(3, 1, 12, 12)
    assert model(x).shape == (3, 5) and model.embed(x).shape == (3, 8)
    # Normalisation is inside the model: the encoder sees (x - 0.3) / 0.2.
    assert torch.allclose(model.embed(x), model.encoder((x - 0.3) / 0.2))
    with pytest.raises(ValueError, match="width"):
        SmallResNet(1, width=0)
    with pytest.raises(ValueError, match="mean and std"):
        SimCLRModel(3, width=4, mean=[0.5])
    with pytest.raises(ValueError, match="projection_dim"):
        SimCLRModel(1, width=4, projection_dim=0)


def test_encode_and_project_is_one_forward_pass_with_the_gradients_of_forward():
    torch.manual_seed(0)
    model = SimCLRModel(1, width=4, blocks=(1, 1), projection_dim=5).train()
    twin = copy.deepcopy(model)
    x = torch.rand(6, 1, 12, 12)
    features, projections = model.encode_and_project(x)
    expected = twin(x)  # train mode: batch statistics, running statistics updated once each
    assert features.shape == (6, 8) and torch.equal(projections, expected)
    assert torch.equal(model.encoder.stem[1].running_mean, twin.encoder.stem[1].running_mean)
    projections.square().sum().backward()
    expected.square().sum().backward()
    for (name, p), q in zip(model.named_parameters(), twin.parameters()):
        assert torch.equal(p.grad, q.grad), name
    with torch.no_grad():
        assert torch.equal(model.eval().encode_and_project(x)[0], model.embed(x))


def test_embed_images_batches_in_eval_mode_and_restores_the_mode():
    torch.manual_seed(0)
    model = SimCLRModel(1, width=4, blocks=(1, 1)).train()
    x = torch.rand(10, 1, 8, 8)
    features = embed_images(model, x, batch_size=3)
    assert model.training
    with torch.no_grad():
        expected = model.eval().embed(x)
    assert torch.allclose(features, expected, atol=1e-5)  # batch norm used running statistics


def test_knn_monitor_identities():
    labels = np.arange(40) % 4
    one_hot = torch.eye(4)[labels]
    assert knn_monitor(one_hot, labels, one_hot, labels) == 1.0  # k = 200 clipped to 40
    wrong = torch.eye(4)[(labels + 1) % 4]
    assert knn_monitor(one_hot, labels, wrong, labels) == 0.0
    assert knn_monitor(one_hot, labels, one_hot[:10], labels[:10], k=1) == 1.0


def test_knn_votes_are_weighted_by_similarity():
    # Two class-0 neighbours orthogonal to the query outvote nothing against one identical class-1
    # neighbour: weights e^0 + e^0 < e^(1 / 0.1).
    train = torch.tensor([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    query = torch.tensor([[1.0, 0.0]])
    assert knn_monitor(train, [0, 0, 1], query, [1], k=3) == 1.0
    # With a very high temperature the vote is nearly a plain count, and the majority wins.
    assert knn_monitor(train, [0, 0, 1], query, [1], k=3, temperature=100.0) == 0.0


def test_knn_monitor_validation():
    x = torch.rand(5, 3)
    with pytest.raises(ValueError, match="k must"):
        knn_monitor(x, np.zeros(5, int), x, np.zeros(5, int), k=0)
    with pytest.raises(ValueError, match="temperature"):
        knn_monitor(x, np.zeros(5, int), x, np.zeros(5, int), temperature=0)
    with pytest.raises(ValueError, match="train_features"):
        knn_monitor(x, np.zeros(4, int), x, np.zeros(5, int))
    with pytest.raises(ValueError, match="test_features"):
        knn_monitor(x, np.zeros(5, int), torch.rand(5, 2), np.zeros(5, int))


def test_linear_probe_separates_blobs():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 60)
    features = rng.normal(size=(180, 8)) + 4 * np.eye(8)[labels]
    train, test = np.arange(180) % 3 != 0, np.arange(180) % 3 == 0
    assert linear_probe(features[train], labels[train], features[test], labels[test]) > 0.95
    noise = rng.normal(size=(180, 8))
    assert linear_probe(noise[train], labels[train], noise[test], labels[test]) < 0.7
    with pytest.raises(ValueError, match="C must"):
        linear_probe(features, labels, features, labels, C=0)
    with pytest.raises(ValueError, match="two classes"):
        linear_probe(features, np.zeros(180, int), features, labels)
    with pytest.raises(ValueError, match="test_features"):
        linear_probe(features, labels, features[:, :3], labels)
