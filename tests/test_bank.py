import numpy as np
import pytest
import torch

import batchsampler.bank as bank_module
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


def _host_rows_follow(bank: EmbeddingBank) -> None:
    """``host_float32()`` is the bank's rows as float32, now: after updates and after a restore."""
    assert bank.host_float32() is None
    rng = np.random.default_rng(0)
    bank.update(np.arange(6), rng.standard_normal((6, 3)))
    first = bank.host_float32()
    assert first.dtype == np.float32 and first.shape == (6, 3)
    np.testing.assert_array_equal(first, bank.numpy().astype(np.float32))
    bank.update([4, 1, 4], rng.standard_normal((3, 3)))  # a repeat: the last row wins
    bank.update([2], rng.standard_normal((1, 3)))
    again = bank.host_float32()
    np.testing.assert_array_equal(again, bank.numpy().astype(np.float32))
    np.testing.assert_array_equal(bank.host_float32(), again)  # nothing written since: unchanged
    saved = rng.standard_normal((6, 3))
    bank.restore(bank.check_restore(saved, np.ones(6, bool), np.zeros(6, np.int64), 1, "test"))
    np.testing.assert_array_equal(bank.host_float32(), saved.astype(bank.dtype).astype(np.float32))


def test_host_float32_of_a_float32_bank_is_the_bank_itself():
    bank = EmbeddingBank(6)
    _host_rows_follow(bank)
    assert bank.host_float32() is bank.embeddings


def test_host_float32_of_a_float16_bank_is_a_mirror_kept_current():
    bank = EmbeddingBank(6, dtype=np.float16)
    _host_rows_follow(bank)
    mirror = bank.host_float32()
    assert mirror is not bank.embeddings and not np.shares_memory(mirror, bank.embeddings)
    bank.update([0], np.full((1, 3), 0.25))
    assert bank.host_float32() is mirror and mirror[0].tolist() == [0.25] * 3  # updated in place


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_host_float32_of_a_device_bank_follows_the_updates(monkeypatch, dtype):
    # A device bank on CPU tensors; numpy() copies, as it does off the CPU.
    monkeypatch.setattr(bank_module, "_torch_storage", lambda device: True)
    numpy = EmbeddingBank.numpy
    monkeypatch.setattr(EmbeddingBank, "numpy", lambda self: None if (rows := numpy(self)) is None else rows.copy())
    bank = EmbeddingBank(6, dtype=dtype, device="cpu")
    _host_rows_follow(bank)
    assert isinstance(bank.embeddings, torch.Tensor)
