"""Resumption: O(1) state, StatefulDataLoader, checkpoints, exact continuation mid-epoch."""

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset
from torchdata.stateful_dataloader import StatefulDataLoader

from batchsampler import SAMPLERS, BatchSampler, UniformBatchSampler


class Indexed(Dataset):
    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, index):
        return index


def _embeddings(n, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((6, 8)) * 3
    return (centers[np.arange(n) % 6] + rng.standard_normal((n, 8))).astype(np.float32)


def _make(sampler_name="batchsampler", n=200, **overrides):
    kwargs = dict(k=5, m=40, seed=11, refresh_every=4, warmup_epochs=1, swap_delay=3)
    kwargs.update(overrides)
    return SAMPLERS[sampler_name](n, 16, **kwargs)


def _run(sampler, loader, embeddings, epochs, *, start_step=0, stop_at=None, start_epoch=0):
    """Train-loop stand-in: records batches and feeds back step-dependent embeddings."""
    stream, step = [], start_step
    for epoch in range(start_epoch, epochs):
        for batch in loader:
            indices = batch.tolist()
            stream.append(indices)
            sampler.update(indices, embeddings[indices] + 0.01 * step)
            step += 1
            if stop_at is not None and step == stop_at:
                return stream, step, True
    return stream, step, False


@pytest.mark.parametrize("num_workers", [0, 2])
@pytest.mark.parametrize("sampler_name", ["batchsampler", "knn"])
def test_stateful_dataloader_resumes_exactly_mid_epoch(tmp_path, num_workers, sampler_name):
    # 13 batches per epoch: stop in epoch 1, after graphs exist
    _check_exact_resume(tmp_path, sampler_name, num_workers, stop=21)


@pytest.mark.parametrize("stop", [19, 22])
def test_resume_inside_a_walk_group_replays_the_grown_batches(tmp_path, stop):
    # Groups of 4 batches: 13 batches per epoch are grown as 0-3, 4-7, 8-11, 12, so both stops
    # (epoch 1, batches 6 and 9) fall inside a group whose rest was grown before the checkpoint.
    _check_exact_resume(tmp_path, "batchsampler", 0, stop=stop, lockstep_batches=4)


def _check_exact_resume(tmp_path, sampler_name, num_workers, *, stop, **overrides):
    n, epochs = 200, 3
    embeddings = _embeddings(n)
    dataset = Indexed(n)

    reference = _make(sampler_name, **overrides)
    loader = StatefulDataLoader(dataset, batch_sampler=reference, num_workers=num_workers)
    expected, _, _ = _run(reference, loader, embeddings, epochs)
    assert reference.graph_version >= 3

    first = _make(sampler_name, **overrides)
    loader = StatefulDataLoader(dataset, batch_sampler=first, num_workers=num_workers)
    head, step, stopped = _run(first, loader, embeddings, epochs, stop_at=stop)
    assert stopped
    loader_state = loader.state_dict()
    first.save(tmp_path / "sampler.npz")
    first.close()

    resumed = _make(sampler_name, **overrides)
    resumed.load(tmp_path / "sampler.npz")
    loader = StatefulDataLoader(dataset, batch_sampler=resumed, num_workers=num_workers)
    loader.load_state_dict(loader_state)
    tail, _, _ = _run(resumed, loader, embeddings, epochs, start_step=step, start_epoch=1)
    assert head + tail == expected


def test_state_dict_is_small_and_tracks_the_position():
    sampler = _make(n=200)
    state = sampler.state_dict()
    assert state["epoch"] == 0 and state["position"] == 0
    iterator = iter(sampler)
    for _ in range(5):
        next(iterator)
    state = sampler.state_dict()
    assert (state["epoch"], state["position"]) == (0, 5)
    assert all(isinstance(v, (int, type(None))) for v in state.values())
    list(iterator)
    # After the last batch the state is the end of epoch 0 (torch's samplers under
    # StatefulDataLoader behave so): resuming from it yields nothing, then epoch 1.
    state = sampler.state_dict()
    assert (state["epoch"], state["position"]) == (0, len(sampler))
    second = list(sampler)
    resumed = _make(n=200)
    resumed.load_state_dict(state)
    assert list(resumed) == []
    assert list(resumed) == second


@pytest.mark.parametrize("sampler_class", list(SAMPLERS.values()))
def test_replay_resume_without_checkpoint_when_the_graph_is_fixed(sampler_class):
    embeddings = _embeddings(150)
    kwargs = dict(k=5, m=30, seed=2, embeddings=embeddings)
    reference = sampler_class(150, 16, **kwargs)
    reference.set_epoch(3)
    expected = list(reference)
    interrupted = sampler_class(150, 16, **kwargs)
    interrupted.set_epoch(3)
    iterator = iter(interrupted)
    head = [next(iterator) for _ in range(4)]
    state = interrupted.state_dict()
    fresh = sampler_class(150, 16, **kwargs)
    fresh.load_state_dict(state)
    assert head + list(fresh) == expected


def test_load_state_dict_rejects_another_sampler():
    state = _make(n=200).state_dict()
    with pytest.raises(ValueError, match="seed"):
        _make(n=200, seed=12).load_state_dict(state)
    with pytest.raises(ValueError, match="num_instances"):
        _make(n=201).load_state_dict(state)


def test_checkpoint_roundtrip_and_class_check(tmp_path):
    embeddings = _embeddings(120)
    sampler = BatchSampler(120, 16, k=5, m=30, seed=0, embeddings=embeddings)
    sampler.save(tmp_path / "a.npz")
    restored = BatchSampler(120, 16, k=5, m=30, seed=0)
    restored.load(tmp_path / "a.npz")
    np.testing.assert_array_equal(restored.bank.embeddings, sampler.bank.embeddings)
    np.testing.assert_array_equal(restored.bank.staleness(), sampler.bank.staleness())
    np.testing.assert_array_equal(restored.graph.neighbors, sampler.graph.neighbors)
    assert restored.graph_version == sampler.graph_version
    assert list(restored) == list(sampler)
    with pytest.raises(ValueError, match="expected a UniformBatchSampler checkpoint"):
        UniformBatchSampler(120, 16).load(tmp_path / "a.npz")


def test_torch_tensor_batches_from_stateful_loader_are_lists():
    sampler = UniformBatchSampler(50, 8, seed=0)
    loader = StatefulDataLoader(Indexed(50), batch_sampler=sampler)
    batches = [b.tolist() for b in loader]
    assert sorted(i for b in batches for i in b) == list(range(50))
    assert isinstance(batches[0][0], int) and torch.is_tensor(next(iter(loader)))


def test_replay_warns_when_the_graph_changed_before_the_resume_point(caplog):
    embeddings = _embeddings(150)
    sampler = BatchSampler(150, 16, k=5, m=30, seed=2, embeddings=embeddings)
    iterator = iter(sampler)
    next(iterator)
    sampler.refresh()  # the graph changes mid-epoch
    next(iterator)
    state = sampler.state_dict()
    fresh = BatchSampler(150, 16, k=5, m=30, seed=2, embeddings=embeddings)
    fresh.set_graph(sampler.graph)  # even the right final graph cannot replay batch 0 exactly
    fresh.graph_version = sampler.graph_version
    fresh.load_state_dict(state)
    with caplog.at_level("WARNING", logger="batchsampler"):
        assert len(list(fresh)) == len(sampler) - 2
    assert "graph changed during that epoch" in caplog.text


def test_replay_is_silent_when_the_graph_did_not_change(caplog):
    embeddings = _embeddings(150)
    sampler = BatchSampler(150, 16, k=5, m=30, seed=2, embeddings=embeddings)
    iterator = iter(sampler)
    next(iterator), next(iterator)
    fresh = BatchSampler(150, 16, k=5, m=30, seed=2, embeddings=embeddings)
    fresh.load_state_dict(sampler.state_dict())
    with caplog.at_level("WARNING", logger="batchsampler"):
        list(fresh)
    assert caplog.text == ""
