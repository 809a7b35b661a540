"""The epoch contract inside real loaders: DataLoader with 0 / 2 / 2 persistent workers,
torchdata's StatefulDataLoader, with and without ``set_epoch``; superseded iterators; resuming
at an epoch boundary as torch's own samplers do; Lightning's re-instantiation."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler
from torchdata.stateful_dataloader import StatefulDataLoader

from batchsampler import SAMPLERS, BatchSampler

N, B = 120, 16
LOADERS = {
    "workers0": dict(num_workers=0),
    "workers2": dict(num_workers=2),
    "workers2-persistent": dict(num_workers=2, persistent_workers=True),
}


def _embeddings(n=N):
    rng = np.random.default_rng(0)
    return (rng.standard_normal((6, 8))[np.arange(n) % 6] * 3 + rng.standard_normal((n, 8))).astype(np.float32)


def _sampler(name="batchsampler", **overrides):
    kwargs = dict(k=5, m=30, seed=3, embeddings=_embeddings())
    kwargs.update(overrides)
    return SAMPLERS[name](N, B, **kwargs)


def _epochs(loader, sampler, epochs, set_epoch):
    stream = []
    for epoch in range(epochs):
        if set_epoch:
            sampler.set_epoch(epoch)
        stream.append([batch.tolist() for batch in loader])
    return stream


@pytest.mark.parametrize("loader_class", [DataLoader, StatefulDataLoader], ids=["DataLoader", "StatefulDataLoader"])
@pytest.mark.parametrize("set_epoch", [True, False], ids=["set_epoch", "auto_epoch"])
@pytest.mark.parametrize("config", list(LOADERS), ids=list(LOADERS))
def test_same_batches_and_epoch_numbers_for_every_loader(loader_class, set_epoch, config):
    expected = []
    reference = _sampler()
    for epoch in range(3):
        reference.set_epoch(epoch)
        expected.append(list(reference))
    sampler = _sampler()
    loader = loader_class(range(N), batch_sampler=sampler, **LOADERS[config])
    assert _epochs(loader, sampler, 3, set_epoch) == expected
    assert sampler.epoch == 3


@pytest.mark.parametrize("config", list(LOADERS), ids=list(LOADERS))
def test_warmup_epoch_is_uniform_and_builds_start_after_it(config):
    embeddings = torch.from_numpy(_embeddings())
    sampler = BatchSampler(N, B, k=5, m=30, seed=3, refresh_every=3, warmup_epochs=1, swap_delay=1)
    loader = DataLoader(range(N), batch_sampler=sampler, **LOADERS[config])
    builds = []
    for _ in range(2):
        for batch in loader:
            sampler.update(batch, embeddings[batch])
        builds.append(sampler.refresh_stats.builds)
    assert builds[0] == 0  # the first loader epoch is the warm-up
    assert builds[1] >= 1


def test_a_newer_iterator_supersedes_the_older_one():
    sampler = _sampler()
    first = iter(sampler)
    head = next(first)
    second = iter(sampler)
    assert next(second) != head and sampler.state_dict()["epoch"] == 1  # the next epoch
    with pytest.raises(RuntimeError, match="superseded"):
        next(first)
    assert len([next(second)] + list(second)) == len(sampler) - 1


def test_an_iterator_that_never_starts_consumes_nothing():
    sampler = _sampler()
    unused = iter(sampler)  # noqa: F841 - what DataLoader's worker iterator does in __init__
    assert sampler.epoch == 0 and len(list(sampler)) == len(sampler) and sampler.epoch == 1


def test_set_epoch_keeps_a_restored_position_of_the_same_epoch():
    reference = _sampler()
    reference.set_epoch(2)
    expected = list(reference)
    interrupted = _sampler()
    interrupted.set_epoch(2)
    iterator = iter(interrupted)
    head = [next(iterator) for _ in range(3)]
    resumed = _sampler()
    resumed.load_state_dict(interrupted.state_dict())
    resumed.set_epoch(2)  # e.g. Lightning, just before it resumes epoch 2
    assert head + list(resumed) == expected


LOADER_OF = {
    # torch's own sampling (StatefulDataLoader swaps in its stateful RandomSampler / BatchSampler)
    "torch": lambda workers: StatefulDataLoader(range(N), batch_size=B, shuffle=True, num_workers=workers),
    "batchsampler": lambda workers: StatefulDataLoader(range(N), batch_sampler=_sampler(), num_workers=workers),
}


def _boundary_run(make, num_workers, saved):
    """Batches yielded by the first two iterations of a loader resumed from a state taken at
    the last batch of epoch 0 (``saved="in-loop"``) or after the loop ended (``"after-loop"``),
    and the two epochs the uninterrupted loader yields after that point."""
    loader = make(num_workers)
    state = None
    for i, _ in enumerate(loader):
        if i == len(loader) - 1 and saved == "in-loop":
            state = loader.state_dict()
    if saved == "after-loop":
        state = loader.state_dict()
    uninterrupted = [[b.tolist() for b in loader] for _ in range(2)]
    resumed = make(num_workers)
    resumed.load_state_dict(state)
    return [[b.tolist() for b in resumed] for _ in range(2)], uninterrupted


@pytest.mark.parametrize("saved", ["in-loop", "after-loop"])
@pytest.mark.parametrize("num_workers", [0, 2])
def test_resume_at_an_epoch_boundary_matches_torch(num_workers, saved):
    torch_resumed, _ = _boundary_run(LOADER_OF["torch"], num_workers, saved)
    ours, uninterrupted = _boundary_run(LOADER_OF["batchsampler"], num_workers, saved)
    # torch: a state saved at the last batch resumes with an empty rest of the epoch; one saved
    # after the loop ended resumes with the next epoch.
    assert [len(epoch) for epoch in ours] == [len(epoch) for epoch in torch_resumed]
    expected = [[], uninterrupted[0]] if saved == "in-loop" else uninterrupted
    assert ours == expected


def test_lightning_reinstantiation_under_ddp_fails_loudly():
    from lightning.pytorch.trainer.states import RunningStage
    from lightning.pytorch.utilities.data import _update_dataloader

    for sampler_class in SAMPLERS.values():
        loader = DataLoader(range(N), batch_sampler=sampler_class(N, B, k=5, m=30))
        shard = DistributedSampler(range(N), num_replicas=4, rank=0, shuffle=False)
        with pytest.raises(ValueError, match="use_distributed_sampler=False"):
            _update_dataloader(loader, shard, mode=RunningStage.TRAINING)
