"""``batchsampler bench``: a quick speed check of graph building and epoch walks (a few seconds).

On synthetic clustered embeddings (d = 128) it times, in this process, ``ProximityGraph.build``
(K = 100, M = 1000, scaled down below N = 2000 as ``scaled_graph_size`` does) and one
exactly-once epoch of a ``BatchSampler`` walking that graph (B = 512, at most N / 2;
alpha = 0.2) at each size, next to the authors' approach (``benchmarks/naive.py``, available
in a source checkout): its graph build timed on a prefix of nodes and its Python walk on a
prefix of batches, both extrapolated. The full benchmarks, with repeats in fresh processes and
peak memory, are the ``benchmarks/bench_*.py`` scripts.
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

_NAIVE_NODES = 500  # graph-build prefix of the naive baseline (one chunk)
_NAIVE_BATCHES = 10  # walk prefix of the naive baseline
_NAIVE_BATCHES_PER_EPOCH = 6.5  # its epoch, in multiples of N / B (measured on these data)


def add_parser(commands: Any) -> None:
    """Register the ``bench`` sub-command on an ``argparse`` sub-parsers object."""
    bench = commands.add_parser(
        "bench",
        help="quick speed check: graph build and one epoch at N = 1e4 and 1e5 (a few seconds)",
        description=__doc__.split("\n\n")[1].replace("\n", " "),
    )
    bench.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000], help="N values (default: %(default)s)")
    bench.add_argument("--k", type=int, default=None, help="out-degree (default: 100, scaled to N below N = 2000)")
    bench.add_argument("--m", type=int, default=None, help="candidates per node (default: 1000, scaled to N below N = 2000)")
    bench.add_argument("--batch-size", type=int, default=None, help="B (default: 512, at most N / 2)")
    bench.add_argument("--num-threads", type=int, default=None, help="threads for the build (default: all cores)")
    bench.add_argument("--no-naive", action="store_true", help="skip the naive baseline")
    bench.set_defaults(handler=run)


def synthetic_embeddings(n: int, dim: int = 128, seed: int = 0) -> np.ndarray:
    """float32 ``[n, dim]``: Gaussian clusters (about sqrt(n) of them) of Zipf-distributed sizes."""
    rng = np.random.default_rng(seed)
    clusters = max(10, int(np.sqrt(n)))
    weights = 1.0 / np.arange(1, clusters + 1) ** 1.1
    centers = rng.standard_normal((clusters, dim)).astype(np.float32)
    labels = rng.choice(clusters, size=n, p=weights / weights.sum())
    return centers[labels] + rng.standard_normal((n, dim), dtype=np.float32)


def load_naive() -> ModuleType | None:
    """``benchmarks/naive.py`` of the source checkout this package runs from, if any."""
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "naive.py"
    if not path.is_file():
        return None
    spec = importlib.util.spec_from_file_location("batchsampler_benchmarks_naive", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sizes_for(n: int, k: int | None = None, m: int | None = None, batch_size: int | None = None) -> tuple[int, int, int]:
    """``(k, m, batch_size)`` benchmarked at size ``n``: those given, else K = 100, M = 1000
    scaled by :func:`batchsampler.scaled_graph_size` and B = ``min(512, max(2, n // 2))``.

    Raises:
        ValueError: if ``n < 2``.
    """
    from ..sampler import scaled_graph_size

    k, m = scaled_graph_size(n, k, m)
    return k, m, batch_size if batch_size is not None else min(512, max(2, n // 2))


def measure(
    n: int, naive: ModuleType | None, num_threads: int | None,
    k: int | None = None, m: int | None = None, batch_size: int | None = None,
) -> dict[str, float]:
    """Seconds of our build and epoch at size ``n`` (and the naive estimates); ``k``, ``m`` and
    ``batch_size`` as :func:`sizes_for` resolves them (also returned in the row)."""
    import torch

    from .._threads import limit_threads
    from ..graph import ProximityGraph
    from ..sampler import BatchSampler

    k, m, batch_size = sizes_for(n, k, m, batch_size)
    x = synthetic_embeddings(n)
    start = time.perf_counter()
    graph = ProximityGraph.build(x, k, m, seed=0, num_threads=num_threads)
    row: dict[str, float] = {"k": k, "m": m, "batch_size": batch_size, "build": time.perf_counter() - start}
    start = time.perf_counter()
    batches = list(BatchSampler.from_graph(graph, batch_size, restart_prob=0.2, seed=0))
    row["epoch"] = time.perf_counter() - start
    row["no_in_edge"] = float(np.mean(graph.in_degrees() == 0))
    if naive is not None:
        nodes = min(n, _NAIVE_NODES)
        # One torch thread: the naive baseline's fastest setting on small, shared machines.
        with limit_threads(1):
            workspace = torch.zeros((nodes, m, x.shape[1]))  # its chunk tensor, faulted in untimed
            start = time.perf_counter()
            naive.naive_graph(x, k, m, chunks=-(-n // nodes), max_nodes=nodes, workspace=workspace)
            row["naive_build"] = (time.perf_counter() - start) * n / nodes
        start = time.perf_counter()
        done = naive.naive_epoch(graph.neighbors, batch_size, 0.2, max_batches=_NAIVE_BATCHES)
        row["naive_epoch"] = (time.perf_counter() - start) / len(done) * _NAIVE_BATCHES_PER_EPOCH * len(batches)
    return row


def run(args: argparse.Namespace) -> int:
    from ..graph import ProximityGraph
    from ..sampler import BatchSampler

    for n in args.sizes:  # every size checked before anything is timed
        k, m, batch_size = sizes_for(n, args.k, args.m, args.batch_size)
        if not (1 <= k < n and m >= k and batch_size >= 1):
            raise ValueError(
                f"--sizes {n}: needs 1 <= k < N, m >= k and batch size >= 1, got k={k}, m={m}, batch size {batch_size}"
                " (omit --k/--m/--batch-size to scale them to N)"
            )
    naive = None if args.no_naive else load_naive()
    start = time.perf_counter()  # load the compiled kernels once (numba cache)
    warm = ProximityGraph.build(synthetic_embeddings(2000, 8), 5, 50)
    for lockstep in (1, 16):
        list(BatchSampler.from_graph(warm, 64, lockstep_batches=lockstep))
    print(f"compiled kernels loaded in {time.perf_counter() - start:.2f} s (once per process)")
    header = f"{'N':>10}{'k':>5}{'m':>6}{'B':>5}{'build s':>10}{'epoch s':>10}{'no in-edge':>12}"
    if naive is not None:
        header += f"{'naive build s':>15}{'ratio':>8}{'naive epoch s':>15}{'ratio':>8}"
    print(header)
    print("-" * len(header))
    for n in args.sizes:
        row = measure(n, naive, args.num_threads, args.k, args.m, args.batch_size)
        line = (f"{n:>10,}{row['k']:>5}{row['m']:>6}{row['batch_size']:>5}"
                f"{row['build']:>10.3f}{row['epoch']:>10.3f}{row['no_in_edge']:>12.2%}")
        if naive is not None:
            line += (
                f"{row['naive_build']:>15.1f}{row['naive_build'] / row['build']:>7.0f}x"
                f"{row['naive_epoch']:>15.2f}{row['naive_epoch'] / row['epoch']:>7.0f}x"
            )
        print(line, flush=True)
    if naive is None and not args.no_naive:
        print("(naive baseline skipped: benchmarks/naive.py is only in a source checkout)")
    else:
        print(
            f"naive: authors' approach (benchmarks/naive.py), build timed on {_NAIVE_NODES} nodes and walk on "
            f"{_NAIVE_BATCHES} batches, extrapolated (its epoch needs ~{_NAIVE_BATCHES_PER_EPOCH:g} x N/B batches), "
            "one torch thread."
        )
    return 0
