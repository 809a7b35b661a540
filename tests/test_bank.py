import numpy as np
import pytest
import torch

from batchsampler import EmbeddingBank


def test_update_overwrites_rows_and_tracks_seen():
    bank = EmbeddingBank(10)
    assert bank.embeddings is None and bank.dim is None and bank.num_seen == 0
    bank.update([1, 3], np.array([[1.0, 2.0], [3.0, 4.0]]))
    bank.update(torch.tensor([3, 3]), torch.tensor([[5.0, 6.0], [7.0, 8.0]]))  # last wins
    assert bank.dim == 2 and bank.num_seen == 2
    np.testing.assert_array_equal(bank.embeddings[[1, 3]], [[1, 2], [7, 8]])
    assert bank.seen.tolist() == [i in (1, 3) for i in range(10)]
    assert (bank.embeddings[0] == 0).all()


def test_float16_storage():
    bank = EmbeddingBank(4, dtype=np.float16)
    bank.update(np.arange(4), np.full((4, 3), 0.5))
    assert bank.embeddings.dtype == np.float16


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"^dtype\b"):
        EmbeddingBank(4, dtype=np.int32)
    with pytest.raises(ValueError, match=r"^num_instances\b"):
        EmbeddingBank(0)
    bank = EmbeddingBank(4)
    with pytest.raises(ValueError, match=r"^indices\b"):
        bank.update(np.zeros((2, 2), dtype=int), np.ones((2, 2)))
    with pytest.raises(TypeError, match=r"^indices\b"):
        bank.update(np.array([0.5]), np.ones((1, 2)))
    with pytest.raises(TypeError, match=r"^embeddings\b"):
        bank.update([0], np.array([["a", "b"]]))
    assert bank.num_seen == 0


def test_staleness_counts_updates_since_each_row_was_written():
    bank = EmbeddingBank(4)
    assert bank.staleness().tolist() == [-1, -1, -1, -1]
    bank.update([0, 1], np.ones((2, 2)))
    bank.update([1], np.ones((1, 2)))
    bank.update([2], np.ones((1, 2)))
    assert bank.updates == 3
    assert bank.staleness().tolist() == [2, 1, 0, -1]
