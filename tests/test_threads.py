import faiss
import pytest
import torch
from threadpoolctl import threadpool_info

from batchsampler._threads import check_main_process, default_workers, limit_threads


def _blas_threads():
    return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]


def test_limit_threads_sets_and_restores_every_engine():
    before = (torch.get_num_threads(), faiss.omp_get_max_threads(), _blas_threads())
    with limit_threads(1):
        assert torch.get_num_threads() == 1
        assert faiss.omp_get_max_threads() == 1
        assert all(count == 1 for count in _blas_threads())
    assert (torch.get_num_threads(), faiss.omp_get_max_threads(), _blas_threads()) == before


def test_limit_threads_none_changes_nothing():
    before = torch.get_num_threads()
    with limit_threads(None):
        assert torch.get_num_threads() == before


def test_default_workers_is_a_positive_core_count():
    import os

    assert 1 <= default_workers() <= (os.cpu_count() or 1)


def test_check_main_process(monkeypatch):
    from torch.utils.data._utils import worker

    check_main_process("anything")
    monkeypatch.setattr(worker, "_worker_info", object())
    with pytest.raises(RuntimeError, match="^Building"):
        check_main_process("Building")
