"""FeedbackBatchSampler: embeddings from a training step reach the rows of their own batch."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from batchsampler import BatchSampler, FeedbackBatchSampler, UniformBatchSampler

N, B = 96, 8


class Features(Dataset):
    """Items carry no index: row ``i`` is the vector ``[i, i, i]``."""

    def __len__(self):
        return N

    def __getitem__(self, index):
        return torch.full((3,), float(index))


@pytest.mark.parametrize("loader_kwargs", [dict(num_workers=0), dict(num_workers=2), dict(num_workers=2, persistent_workers=True)],
                         ids=["workers0", "workers2", "persistent"])
def test_each_update_lands_on_the_rows_of_its_batch(loader_kwargs):
    sampler = FeedbackBatchSampler(BatchSampler(N, B, k=5, m=20, seed=1, refresh_every=4, swap_delay=1))
    loader = DataLoader(Features(), batch_sampler=sampler, **loader_kwargs)
    for epoch in range(2):
        sampler.set_epoch(epoch)
        for x in loader:
            indices = sampler.update(x * 2)  # the step's embeddings, no indices in the batch
            assert indices == (x[:, 0]).long().tolist()
    bank = sampler.base_sampler.bank
    assert bank.seen.all() and sampler.pending == 0
    np.testing.assert_allclose(bank.embeddings, 2 * np.repeat(np.arange(N, dtype=np.float32)[:, None], 3, axis=1))
    assert sampler.refresh_stats.builds >= 1  # the schedule ran on the fed-back bank


def test_replicas_deal_every_rank_its_own_slice_round_robin():
    inner = UniformBatchSampler(N, B, seed=0)
    expected = list(inner)
    sampler = FeedbackBatchSampler(UniformBatchSampler(N, B, seed=0), replicas=3)
    stream = list(sampler)
    assert len(sampler) == len(stream) == 3 * len(expected)
    for rank in range(3):  # accelerate's BatchSamplerShard: batch j goes to rank j % 3
        assert stream[rank::3] == expected
    assert sampler.pending == len(expected)  # recorded once per batch


def test_out_of_step_updates_are_caught():
    sampler = FeedbackBatchSampler(UniformBatchSampler(N, B, seed=0))
    with pytest.raises(RuntimeError, match="without a pending batch"):
        sampler.update(np.zeros((B, 3)))
    iterator = iter(sampler)
    next(iterator)
    with pytest.raises(ValueError, match="out of step"):
        sampler.update(np.zeros((B + 1, 3)))
    assert sampler.pending == 1 and sampler.base_sampler.bank.updates == 0


def test_an_abandoned_epoch_leaves_no_pending_batch_behind():
    sampler = FeedbackBatchSampler(UniformBatchSampler(N, B, seed=0))
    iterator = iter(sampler)
    next(iterator), next(iterator)
    second = iter(sampler)
    first_of_next = next(second)
    assert sampler.pending == 1 and sampler.dropped == 2 and sampler.next_indices() == first_of_next
    sampler.skip()
    assert sampler.pending == 0


def test_it_forwards_the_sampler_protocol():
    base = BatchSampler(N, B, k=5, m=20, seed=3)
    sampler = FeedbackBatchSampler(base)
    sampler.sampler.set_epoch(4)  # where Lightning and accelerate call it
    assert base.epoch == 4 and sampler.batch_size == B and sampler.drop_last is False
    assert sampler.state_dict() == base.state_dict()
    with pytest.raises(TypeError, match="with update"):
        FeedbackBatchSampler(torch.utils.data.BatchSampler(range(4), 2, False))
