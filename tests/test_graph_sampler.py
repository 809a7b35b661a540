import pickle

import numpy as np
import pytest

from batchsampler import BatchSampler, KNNBatchSampler, ProximityGraph
from batchsampler.sampler import decayed_restart_prob


def _train(sampler, embeddings, epochs, update_scale=1.0):
    """A training loop stand-in: consume the epochs, feeding embeddings back after each batch."""
    stream = []
    for _ in range(epochs):
        for batch in sampler:
            stream.append(batch)
            sampler.update(batch, embeddings[batch] * update_scale)
    return stream


@pytest.mark.parametrize("background", [True, False])
def test_scheduled_refresh_after_warm_up(background, clustered):
    embeddings, _ = clustered
    sampler = BatchSampler(len(embeddings), 16, k=5, m=30, seed=0, refresh_every=4, warmup_epochs=1,
                           background=background, swap_delay=2)
    assert len(sampler) == 15
    _train(sampler, embeddings, 1)
    assert sampler.graph is None and sampler.refresh_stats.builds == 0  # warm-up epoch: uniform only
    versions = []
    for batch in sampler:
        versions.append(sampler.graph_version)  # the version that produced this batch
        sampler.update(batch, embeddings[batch])
    # Requests before producing batches 15, 19, 23, 27 (counted since construction); a
    # background graph takes over swap_delay = 2 batches after its request, a blocking one at once.
    swaps = [15, 19, 23, 27] if not background else [17, 21, 25, 29]
    assert versions == [sum(s <= t for s in swaps) for t in range(15, 30)]
    assert sampler.refresh_stats.builds == 4
    sampler.close()


def test_background_and_blocking_give_the_same_stream_when_the_swap_point_is_the_same(clustered):
    embeddings, _ = clustered
    kwargs = dict(k=5, m=30, seed=3, refresh_every=5, warmup_epochs=1)
    background = BatchSampler(len(embeddings), 16, background=True, swap_delay=0, **kwargs)
    blocking = BatchSampler(len(embeddings), 16, background=False, **kwargs)
    assert _train(background, embeddings, 3) == _train(blocking, embeddings, 3)
    assert background.graph_version == blocking.graph_version > 0


def test_background_stream_is_deterministic(clustered):
    embeddings, _ = clustered
    streams = []
    for _ in range(2):
        sampler = BatchSampler(len(embeddings), 16, k=5, m=30, seed=1, refresh_every=3, swap_delay=2)
        streams.append(_train(sampler, embeddings, 3))
    assert streams[0] == streams[1]


def test_refresh_mid_epoch_keeps_the_epoch_a_partition(clustered):
    embeddings, _ = clustered
    sampler = BatchSampler(len(embeddings), 16, k=5, m=30, seed=0, embeddings=embeddings)
    epoch = []
    for number, batch in enumerate(sampler):
        epoch.append(batch)
        if number == 4:
            sampler.refresh()
    assert sampler.graph_version == 2
    assert sorted(i for b in epoch for i in b) == list(range(len(embeddings)))


def test_background_build_failure_surfaces_in_the_loop(clustered, monkeypatch):
    embeddings, _ = clustered
    sampler = BatchSampler(len(embeddings), 16, k=5, m=30, seed=0, embeddings=embeddings, swap_delay=1)

    def broken(*args, **kwargs):
        raise MemoryError("out of memory while building")

    monkeypatch.setattr(ProximityGraph, "build", broken)
    iterator = iter(sampler)
    next(iterator)
    assert sampler.refresh(blocking=False) is True  # queued; the old graph stays meanwhile
    next(iterator)  # produced while the build runs (and fails)
    with pytest.raises(RuntimeError, match="background graph build failed: out of memory"):
        next(iterator)


def test_blocking_refresh_failure_raises_directly(clustered, monkeypatch):
    embeddings, _ = clustered
    sampler = BatchSampler(len(embeddings), 16, k=5, m=30, embeddings=embeddings)
    monkeypatch.setattr(ProximityGraph, "build", lambda *a, **k: (_ for _ in ()).throw(ValueError("boom")))
    with pytest.raises(ValueError, match="boom"):
        sampler.refresh()


def test_refresh_stats_measure_the_stall(clustered):
    embeddings, _ = clustered
    blocking = BatchSampler(len(embeddings), 16, k=5, m=30, refresh_every=3, background=False)
    _train(blocking, embeddings, 2)
    stats = blocking.refresh_stats
    assert stats.builds > 0 and stats.stall_seconds == pytest.approx(stats.build_seconds)


def test_restart_prob_schedules(clustered):
    embeddings, _ = clustered
    assert decayed_restart_prob(0.2, 0) == 0.2 and decayed_restart_prob(0.2, 5) == pytest.approx(0.1)
    assert decayed_restart_prob(0.2, 50) == 0.05
    decay = BatchSampler(len(embeddings), 16, k=5, m=30, restart_prob_schedule="decay", embeddings=embeddings)
    custom = BatchSampler(len(embeddings), 16, k=5, m=30, restart_prob_schedule=lambda e: 1.0 / (e + 1),
                          embeddings=embeddings)
    for epoch in range(3):
        list(decay), list(custom)
        assert decay.current_restart_prob == pytest.approx(decayed_restart_prob(0.2, epoch))
        assert custom.current_restart_prob == pytest.approx(1.0 / (epoch + 1))
    with pytest.raises(ValueError, match=r"^restart_prob_schedule\b"):
        BatchSampler(100, 10, k=5, m=20, restart_prob_schedule="cosine")
    bad = BatchSampler(len(embeddings), 16, k=5, m=30, restart_prob_schedule=lambda e: 2.0)
    with pytest.raises(ValueError, match=r"^restart_prob_schedule\(epoch\)"):
        list(bad)


@pytest.mark.parametrize(
    "overrides, argument",
    [({"refresh_every": 0}, "refresh_every"), ({"warmup_epochs": -1}, "warmup_epochs"),
     ({"swap_delay": -1}, "swap_delay"), ({"num_threads": 0}, "num_threads")],
)
def test_bad_refresh_settings(overrides, argument):
    for sampler_class in (BatchSampler, KNNBatchSampler):
        with pytest.raises(ValueError, match=rf"^{argument}\b"):
            sampler_class(100, 10, k=5, m=20, **overrides)


def test_pickled_copy_continues_identically(clustered):
    embeddings, _ = clustered
    sampler = BatchSampler(len(embeddings), 16, k=5, m=30, seed=0, refresh_every=3, swap_delay=2,
                           warmup_epochs=0, embeddings=embeddings)
    iterator = iter(sampler)
    for _ in range(4):
        next(iterator)  # a background build is pending now
    copy = pickle.loads(pickle.dumps(sampler))
    assert copy._pending is not None and copy._executor is None
    assert _train(copy, embeddings, 2) == _train(sampler, embeddings, 2)


def test_refresh_from_an_encoding_pass(clustered):
    import torch

    embeddings, _ = clustered
    data = torch.tensor(embeddings)
    sampler = BatchSampler(len(data), 16, k=5, m=30, seed=0)
    calls = []

    def encode(batch):
        calls.append(len(batch))
        return batch * 2.0

    graph = sampler.refresh_from(encode, data, batch_size=50)
    assert calls == [50, 50, 50, 50, 40]
    assert graph is sampler.graph and sampler.bank.seen.all()
    np.testing.assert_allclose(sampler.bank.embeddings, embeddings * 2.0)
    reference = BatchSampler(len(data), 16, k=5, m=30, seed=0, embeddings=embeddings)
    np.testing.assert_array_equal(graph.neighbors, reference.graph.neighbors)  # scale-free cosine
    with pytest.raises(ValueError, match=r"^dataset must have 240"):
        sampler.refresh_from(encode, data[:10])
    with pytest.raises(ValueError, match=r"^encode_fn must return one row per item"):
        sampler.refresh_from(lambda batch: batch[:1], data, batch_size=50)
