"""Explicit thread counts for the numerical engines, and the main-process guard.

Graph construction runs its blocks on a pool of Python threads (each calling single-threaded
BLAS and compiled numba kernels that release the GIL), FAISS uses its OpenMP pool, and torch
has its own. Each runtime has its own default; leaving all of them at their defaults
oversubscribes small machines, so a build sets them explicitly for its own duration.

FAISS (OpenMP) hangs when used in a process forked after it started its threads (DataLoader
workers are forked), so builds refuse to run inside a DataLoader worker. The batch sampler
itself always runs in the main process.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

__all__ = ["check_main_process", "default_workers", "limit_threads"]


@contextlib.contextmanager
def limit_threads(num_threads: int | None) -> Iterator[None]:
    """Run the body with BLAS, FAISS and torch limited to ``num_threads`` threads.

    Args:
        num_threads: threads per engine; ``None`` leaves every engine as it is.
    """
    if num_threads is None:
        yield
        return
    import faiss
    from threadpoolctl import threadpool_limits

    previous_torch = torch.get_num_threads()
    previous_faiss = faiss.omp_get_max_threads()
    torch.set_num_threads(num_threads)
    faiss.omp_set_num_threads(num_threads)
    try:
        with threadpool_limits(limits=num_threads, user_api="blas"):
            yield
    finally:
        torch.set_num_threads(previous_torch)
        faiss.omp_set_num_threads(previous_faiss)


def default_workers() -> int:
    """Worker threads of a build when ``num_threads`` is not given: the usable cores.

    Uses the CPU affinity mask (``taskset``, container CPU sets) where the OS exposes it.
    """
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def check_main_process(what: str) -> None:
    """Raise if called inside a ``torch.utils.data.DataLoader`` worker process.

    Raises:
        RuntimeError: naming ``what``, when running in a DataLoader worker.
    """
    from torch.utils.data import get_worker_info

    if get_worker_info() is not None:
        raise RuntimeError(
            f"{what} must run in the main process, not in a DataLoader worker: FAISS and "
            "OpenMP thread pools hang after fork. Build graphs in the training loop (refresh())."
        )
