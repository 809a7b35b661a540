"""The sampler's own epoch against the bare epoch walk, interleaved on one graph.

    python -m benchmarks.bench_sampler_epoch [--n 1000000] [--rounds 5] [--json out.json]

One graph (clustered data, d = 128, K = 100, M = 1000) is built once, untimed; then every round
times, in turn, one exactly-once epoch (B = 512, alpha = 0.2) of

* ``random_walk_batches`` (the whole epoch in one compiled call, 16 walkers),
* ``list(BatchSampler.from_graph(graph, 512))`` with walk groups of 16 batches (the default),
* the same sampler walking batch by batch (``lockstep_batches=1``),
* the default sampler with guided re-seeds (``reseed_candidates=32``, the bank holding the
  embeddings the graph was built from; one sampler, a new epoch each round).

Interleaving the variants round by round gives them the same share of a busy machine, so their
ratios hold even where absolute times drift. Reports median (min-max) over the rounds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from benchmarks import _harness


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", help="write all results here")
    args = parser.parse_args(argv)

    from batchsampler import BatchSampler, ProximityGraph
    from batchsampler.walk import random_walk_batches

    _harness.warm_up()
    embeddings = _harness.clustered(args.n, 128, seed=0)
    graph = ProximityGraph.build(embeddings, 100, 1000, seed=0, keep_scores=False)
    guided = BatchSampler.from_graph(graph, 512, seed=0, reseed_candidates=32)
    guided.update(np.arange(args.n), embeddings)
    del embeddings
    variants = {
        "random_walk_batches": lambda r: list(random_walk_batches(graph, 512, 0.2, np.random.default_rng(r))),
        "BatchSampler (lockstep_batches=16)": lambda r: list(BatchSampler.from_graph(graph, 512, seed=r)),
        "BatchSampler (lockstep_batches=1)": lambda r: list(BatchSampler.from_graph(graph, 512, seed=r, lockstep_batches=1)),
        "BatchSampler (reseed_candidates=32)": lambda r: list(guided),
    }
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    for round_ in range(args.rounds):
        for name, epoch in variants.items():
            start = time.perf_counter()
            batches = epoch(round_)
            seconds[name].append(time.perf_counter() - start)
            assert sum(map(len, batches)) == args.n
        print(f"round {round_}: " + ", ".join(f"{name} {values[-1]:.3f} s" for name, values in seconds.items()), flush=True)
    reference = np.median(seconds["random_walk_batches"])
    print(f"\n| variant (N = {args.n:,}) | epoch s | vs random_walk_batches |\n|---|---|---|")
    for name, values in seconds.items():
        print(f"| {name} | {_harness.fmt(values, 3)} | {np.median(values) / reference:.2f}x |")
    _harness.write_json(args.json, {"machine": _harness.machine(), "n": args.n, "seconds": seconds})
    return 0


if __name__ == "__main__":
    sys.exit(main())
