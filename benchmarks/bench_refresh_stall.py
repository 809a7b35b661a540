"""How long does a training loop wait for the sampler, with and without background rebuilds?

A simulated training loop (each step sleeps ``--step-seconds``, like a GPU step that leaves the
CPU idle, then feeds the batch's embeddings back with ``update``) consumes batches from a
BatchSampler that rebuilds its graph every ``--refresh-every`` batches. We time what the loop
spends inside ``next(batches)``: walking, snapshotting the bank and, in blocking mode, the
builds themselves.

    python benchmarks/bench_refresh_stall.py --n 100000 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from batchsampler import BatchSampler


def run(n: int, dim: int, background: bool, args: argparse.Namespace, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((100, dim)).astype(np.float32)
    embeddings = centers[rng.integers(100, size=n)] + rng.standard_normal((n, dim), dtype=np.float32)
    sampler = BatchSampler(
        n, args.batch_size, k=args.k, m=args.m, seed=seed, embeddings=embeddings,
        refresh_every=args.refresh_every, warmup_epochs=0, background=background,
        swap_delay=args.swap_delay, num_threads=args.threads,
    )
    builds_before = sampler.refresh_stats.builds
    stall_before = sampler.refresh_stats.stall_seconds
    waits = []
    batches = (batch for _ in iter(int, 1) for batch in sampler)  # epoch after epoch
    start = time.perf_counter()
    for _ in range(args.steps):
        wait_start = time.perf_counter()
        batch = next(batches)
        waits.append(time.perf_counter() - wait_start)
        time.sleep(args.step_seconds)
        sampler.update(batch, embeddings[batch])
    wall = time.perf_counter() - start
    sampler.close()
    stats = sampler.refresh_stats
    return {
        "wait_total": sum(waits),
        "wait_max": max(waits),
        "builds": stats.builds - builds_before,
        "graph_wait": stats.stall_seconds - stall_before,
        "build_seconds": stats.build_seconds,
        "wall": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--m", type=int, default=1000)
    parser.add_argument("--refresh-every", type=int, default=50)
    parser.add_argument("--swap-delay", type=int, default=8)
    parser.add_argument("--steps", type=int, default=160)
    parser.add_argument("--step-seconds", type=float, default=0.05)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"N={args.n} d={args.dim} B={args.batch_size} K={args.k} M={args.m} refresh_every={args.refresh_every} "
          f"swap_delay={args.swap_delay} steps={args.steps} step={args.step_seconds}s repeats={args.repeats}")
    print("| mode | builds | time in next(), s: median (min-max) | longest single wait, s | graph waits, s | wall, s |")
    print("|---|---|---|---|---|---|")
    for background in (False, True):
        runs = [run(args.n, args.dim, background, args, seed) for seed in range(args.repeats)]

        def cell(key: str) -> str:
            values = [r[key] for r in runs]
            return f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})"

        print(f"| {'background' if background else 'blocking'} | {runs[0]['builds']} | {cell('wait_total')} | "
              f"{cell('wait_max')} | {cell('graph_wait')} | {cell('wall')} |")


if __name__ == "__main__":
    main()
