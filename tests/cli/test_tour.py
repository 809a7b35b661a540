import numpy as np
import pytest
import torch

from batchsampler.cli import _tour


def test_knn_accuracy_by_hand():
    # Two tight pairs in opposite directions; with k = 1 each point votes for its partner's label.
    features = torch.tensor([[1.0, 0.0], [0.9, 0.1], [-1.0, 0.0], [-0.9, -0.1]])
    assert _tour.knn_accuracy(features, np.array([0, 0, 1, 1]), k=1) == 1.0
    assert _tour.knn_accuracy(features, np.array([0, 1, 1, 1]), k=1) == 0.5  # 0 and 1 now vote wrongly


def test_augment_keeps_shape_and_depends_on_the_generator():
    x = torch.rand(5, 64)
    first = _tour.augment(x, torch.Generator().manual_seed(0))
    assert first.shape == x.shape
    assert torch.equal(first, _tour.augment(x, torch.Generator().manual_seed(0)))
    assert not torch.equal(first, _tour.augment(x, torch.Generator().manual_seed(1)))


def test_training_records_every_epoch_and_summarizes_after_warm_up():
    pixels, labels = _tour.load_digits_pixels()
    pixels, labels = pixels[:300], labels[:300]
    settings = _tour.TourSettings(epochs=2, batch_size=50, k=10, m=100, refresh_every=3, swap_delay=1)
    monitor, seconds = _tour.train("batchsampler", pixels, labels, settings, run_name="bs@seed0", progress=False)
    assert monitor.name == "bs@seed0" and seconds > 0
    assert [record["epoch"] for record in monitor.records] == [0, 1]
    assert monitor.records[0]["graph_version"] == 0  # the warm-up epoch is uniform
    assert monitor.records[1]["graph_version"] >= 1 and monitor.records[1]["timing"]["builds"] >= 1
    summary = _tour.summarize_run(monitor)
    assert summary["steps"] == 12 and summary["epochs"] == 2
    assert summary["hardness"] == pytest.approx(monitor.records[1]["hardness"]["mean"])  # epoch 1 only
    assert summary["knn_accuracy"] == monitor.records[1]["metrics"]["knn_accuracy"]
