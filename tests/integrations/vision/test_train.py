import pytest

from batchsampler.integrations.vision import SimCLRConfig, train_simclr
from batchsampler.integrations.vision.train import sampler_options

TINY = {"epochs": 2, "width": 4, "blocks": (1, 1), "batch_size": 32, "projection_dim": 16, "device": "cpu"}


@pytest.mark.parametrize("sampler", ["uniform", "knn", "batchsampler"])
def test_training_per_sampler_records_curves_and_batch_statistics(patterns, sampler):
    train, test = patterns
    result = train_simclr(train, test, SimCLRConfig(sampler=sampler, **TINY))
    epochs = result["epochs"]
    assert [e["num_batches"] for e in epochs] == [3, 3]  # ceil(96 / 32): same steps for every sampler
    assert all(e["coverage"] == 1.0 and e["repeats"] == 0 for e in epochs)
    assert all(0.0 <= e["knn_accuracy"] <= 1.0 and e["loss"] > 0 for e in epochs)
    assert epochs[-1]["same_label_share"] is not None and epochs[-1]["mean_similarity"] is not None
    assert result["knn_accuracy"] == epochs[-1]["knn_accuracy"]
    assert result["linear_accuracy"] > 0.6  # three easy classes, chance is 1/3
    if sampler != "uniform":
        assert epochs[-1]["graph_version"] >= 1  # refreshed after the warm-up epoch


def test_same_seed_same_start_and_monitor_interval(patterns):
    train, test = patterns
    a = train_simclr(train, test, SimCLRConfig(sampler="uniform", seed=1, knn_every=2, linear_probe=False,
                                               **{**TINY, "epochs": 3}))
    b = train_simclr(train, test, SimCLRConfig(sampler="knn", seed=1, linear_probe=False, **TINY))
    assert a["initial_knn_accuracy"] == b["initial_knn_accuracy"]  # same initial weights
    assert [e["knn_accuracy"] is None for e in a["epochs"]] == [True, False, False]  # every 2nd and the last
    assert a["linear_accuracy"] is None


def test_invalid_configurations_are_refused(patterns):
    train, test = patterns
    with pytest.raises(ValueError, match="config.sampler"):
        train_simclr(train, test, SimCLRConfig(sampler="random", **TINY))
    with pytest.raises(ValueError, match="needs labels"):
        train_simclr(train, test, SimCLRConfig(loss="hscl", **TINY))
    with pytest.raises(ValueError, match="epochs"):
        train_simclr(train, test, SimCLRConfig(**{**TINY, "epochs": 0}))
    with pytest.raises(ValueError, match="same shape"):
        small = type(test)(test.images[:, :, :8, :8].contiguous(), test.labels, test.classes)
        train_simclr(train, small, SimCLRConfig(**TINY))


def test_sampler_options_scale_with_the_dataset():
    small = sampler_options(SimCLRConfig(batch_size=256), 5000)
    assert (small["k"], small["m"], small["refresh_every"], small["background"]) == (100, 1000, 20, False)
    tiny = sampler_options(SimCLRConfig(batch_size=32, k=5), 96)
    assert (tiny["k"], tiny["m"], tiny["refresh_every"]) == (5, 48, 3)
