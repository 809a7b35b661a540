import pytest

from batchsampler.integrations.graph import GraphCLConfig, train_graphcl
from batchsampler.integrations.graph.train import sampler_options


@pytest.mark.parametrize("sampler", ["uniform", "knn", "batchsampler"])
def test_one_epoch_per_sampler_trains_and_evaluates(mutag, sampler):
    result = train_graphcl(mutag, GraphCLConfig(sampler=sampler, epochs=2, hidden=16))
    assert 0.5 < result["accuracy"] <= 1.0
    epochs = result["epochs"]
    assert [e["num_batches"] for e in epochs] == [2, 2]  # same steps for every sampler
    assert all(e["coverage"] == 1.0 and e["repeats"] == 0 for e in epochs)
    if sampler != "uniform":
        assert epochs[-1]["graph_version"] >= 1  # refreshed after the warm-up epoch


def test_sampler_options_scale_with_the_dataset():
    small = sampler_options(GraphCLConfig(), 188)
    assert (small["k"], small["m"], small["refresh_every"]) == (18, 94, 2)
    large = sampler_options(GraphCLConfig(), 50_000)
    assert (large["k"], large["m"]) == (100, 1000)


def test_losses_needing_labels_are_refused(mutag):
    with pytest.raises(ValueError, match="needs labels"):
        train_graphcl(mutag, GraphCLConfig(loss="hscl", epochs=1))
    with pytest.raises(ValueError, match="config.sampler"):
        train_graphcl(mutag, GraphCLConfig(sampler="random", epochs=1))
