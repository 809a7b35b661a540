"""The CPU graph build against its own floor: the same matrix products and row gathers alone.

    python -m benchmarks.bench_build_floor [--sizes 1000000 10000000] [--repeats 3] [--threads 2] [--json out.json]

In one process, for each N (d = 128, K = 100, M = 1000, clustered embeddings), interleaved
over ``--repeats`` rounds:

* ``build``: ``ProximityGraph.build`` (``keep_scores=False`` from N = 1e7, to fit in 24 GB);
* ``floor``: the random plan of that build, then for every anchor block only the gathers of its
  anchor and candidate rows and its ``[B, d] x [d, M + 1]`` product (no selection, no sort, no
  writes), with the same threads: what no random-candidate build can avoid;
* ``naive``: the obvious torch version, block GEMM + ``torch.topk`` over the same blocks
  (1e6 only; it is the reference the issue quotes).

It prints wall and CPU seconds (median, min-max) and the ratio build / floor.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from benchmarks import _harness


def _floor(x: np.ndarray, m: int, threads: int, seed: int = 0) -> None:
    from threadpoolctl import threadpool_limits

    from batchsampler import _knn

    rng = np.random.default_rng(seed)
    block = _knn.default_block_size(m)
    plan = _knn.plan_random(x.shape[0], m, rng, block)

    def run(blocks: range) -> float:
        total = 0.0
        for b in blocks:
            anchors = x[plan.anchors[plan.block_rows(b)]]
            candidates = x[plan.candidates[b]]
            total += float((anchors @ candidates.T)[0, 0])
        return total

    chunks = [range(i, plan.num_blocks, threads) for i in range(threads)]
    with threadpool_limits(1), ThreadPoolExecutor(threads) as pool:
        list(pool.map(run, chunks))


def _naive(x: np.ndarray, k: int, m: int, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    from batchsampler import _knn

    rng = np.random.default_rng(0)
    plan = _knn.plan_random(x.shape[0], m, rng, _knn.default_block_size(m))
    xt = torch.from_numpy(x)
    for b in range(plan.num_blocks):
        anchors = xt[torch.from_numpy(plan.anchors[plan.block_rows(b)])]
        candidates = xt[torch.from_numpy(plan.candidates[b])]
        torch.topk(anchors @ candidates.T, k, dim=1)


def _timed(function, *args) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    function(*args)
    return time.perf_counter() - wall, time.process_time() - cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-naive", action="store_true")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    from batchsampler import ProximityGraph

    _harness.warm_up()
    k, m = 100, 1000
    results = []
    for n in args.sizes:
        x = _harness.clustered(n)
        rows: dict[str, list[tuple[float, float]]] = {"build": [], "floor": []}
        if not args.no_naive and n <= 1_000_000:
            rows["naive"] = []
        for _ in range(args.repeats):
            rows["build"].append(_timed(lambda: ProximityGraph.build(
                x, k, m, seed=0, num_threads=args.threads, keep_scores=n < 10_000_000)))
            rows["floor"].append(_timed(_floor, x, m, args.threads))
            if "naive" in rows:
                rows["naive"].append(_timed(_naive, x, k, m, args.threads))
        summary = {"n": n, "threads": args.threads, "repeats": args.repeats}
        for name, timings in rows.items():
            walls, cpus = [t[0] for t in timings], [t[1] for t in timings]
            summary[name] = {"wall": statistics.median(walls), "wall_min": min(walls), "wall_max": max(walls),
                             "cpu": statistics.median(cpus)}
            print(f"N={n:>10,}  {name:<6} wall {summary[name]['wall']:7.2f} s ({min(walls):.2f}-{max(walls):.2f})"
                  f"  cpu {summary[name]['cpu']:7.2f} s", flush=True)
        print(f"N={n:>10,}  build / floor = {summary['build']['wall'] / summary['floor']['wall']:.2f}x", flush=True)
        results.append(summary)
        del x
    meta = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(), "load": os.getloadavg(),
            "argv": sys.argv}
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"meta": meta, "results": results}, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
