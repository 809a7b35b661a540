"""Explicit thread counts for the numerical engines (FAISS and torch).

FAISS and torch each bring an OpenMP runtime; leaving both at their defaults oversubscribes
small machines, so graph construction sets them explicitly for its own duration.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def limit_threads(num_threads: int | None) -> Iterator[None]:
    """Run the body with FAISS and torch limited to ``num_threads`` (``None``: leave as is)."""
    if num_threads is None:
        yield
        return
    import faiss

    previous_torch = torch.get_num_threads()
    previous_faiss = faiss.omp_get_max_threads()
    torch.set_num_threads(num_threads)
    faiss.omp_set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous_torch)
        faiss.omp_set_num_threads(previous_faiss)
