"""Figure 2: one epoch of batches (every index once), ours vs the authors' Python walk.

    python -m benchmarks.bench_walk [--repeats 3] [--sizes 100000 1000000] [--json out.json]

The graph (clustered data, d = 128, K = 100, M = 1000) is built in the worker, untimed; the
timed part is ``list(random_walk_batches(graph, 512, 0.2, rng))``: the compiled epoch plus the
conversion of every batch to a Python list, as a DataLoader consumes it. Variants: 16 walkers
in lock-step (default), 1 walker, replacement mode, and the kNN sampler's breadth-first epoch
(``neighborhood_batches``) on the same graph.

The authors' walk (``benchmarks/naive.py``) rebuilds a set of used nodes for every batch, so an
epoch costs ``O(N^2 / B)``; where a full epoch would exceed a few minutes, its first batches
are timed and the cost is extrapolated to the number of batches its epoch needs (measured as a
multiple of ``N / B`` on the smaller sizes: its batches repeat nodes, so covering the data
takes several times ``N / B`` batches).
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from benchmarks import _harness

_NAIVE_FULL_LIMIT = 100_000
_NAIVE_PREFIX_BATCHES = 100


def run_worker(case: dict) -> dict:
    from batchsampler import ProximityGraph
    from batchsampler.walk import neighborhood_batches, random_walk_batches

    _harness.warm_up()
    x = _harness.clustered(case["n"], 128, seed=0)
    graph = ProximityGraph.build(x, 100, 1000, seed=0, keep_scores=False)
    del x
    b, alpha = case.get("batch_size", 512), case.get("alpha", 0.2)
    rng = np.random.default_rng(case.get("seed", 0))
    impl = case["impl"]
    if impl == "naive":
        from benchmarks.naive import naive_epoch

        limit = case.get("max_batches")
        seconds, batches = _harness.timed(naive_epoch, graph.neighbors, b, alpha, max_batches=limit)  # one thread
        return {"seconds": seconds, "batches": len(batches), "complete": limit is None or len(batches) < limit}
    if impl == "bfs":
        seconds, batches = _harness.timed(lambda: list(neighborhood_batches(graph, b, rng)))
    else:
        def walk():
            walkers, replacement = case.get("walkers", 16), impl == "replacement"
            return list(random_walk_batches(graph, b, alpha, rng, num_walkers=walkers, replacement=replacement))

        seconds, batches = _harness.timed(walk)
    return {"seconds": seconds, "batches": len(batches)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--json", help="write all results here")
    args = parser.parse_args(argv)
    if args.case:
        print(json.dumps(run_worker(json.loads(args.case))))
        return 0
    payload = {"machine": _harness.machine(), "cases": []}
    variants = [("ours, 16 walkers", {"impl": "rwr", "walkers": 16}), ("ours, 1 walker", {"impl": "rwr", "walkers": 1}),
                ("ours, replacement", {"impl": "replacement"}), ("ours, kNN (BFS)", {"impl": "bfs"})]
    rows = []
    batches_per_nominal = None
    for n in args.sizes:
        results = {name: _harness.repeat_case("bench_walk", {"n": n, **case}, args.repeats) for name, case in variants}
        nominal = -(-n // 512)
        if n <= _NAIVE_FULL_LIMIT:
            naive = _harness.repeat_case("bench_walk", {"n": n, "impl": "naive"}, args.repeats)
            batches_per_nominal = naive[0]["batches"] / nominal
            naive_seconds = [r["seconds"] for r in naive]
            note = f"full epoch, {naive[0]['batches']} batches"
        else:
            naive = _harness.repeat_case(
                "bench_walk", {"n": n, "impl": "naive", "max_batches": _NAIVE_PREFIX_BATCHES}, args.repeats
            )
            needed = (batches_per_nominal or 6.0) * nominal
            naive_seconds = [r["seconds"] / r["batches"] * needed for r in naive]
            note = f"extrapolated from {_NAIVE_PREFIX_BATCHES} batches to {needed:.0f}"
        payload["cases"].append({"n": n, **results, "naive": naive, "naive_epoch_seconds": naive_seconds})
        ours = np.median([r["seconds"] for r in results["ours, 16 walkers"]])
        cells = " | ".join(_harness.fmt([r["seconds"] for r in results[name]], 3) for name, _ in variants)
        rows.append(
            f"| {n:,} | {cells} | {_harness.fmt(naive_seconds, 1)} ({note}) | {np.median(naive_seconds) / ours:.0f}x "
            f"| {_harness.fmt([r['peak_rss_mb'] / 1024 for r in results['ours, 16 walkers']])} |"
        )
    print("| N | " + " s | ".join(name for name, _ in variants) + " s | naive s | speed-up (16 walkers) | peak GB (incl. build) |")
    print("|---|" + "---|" * (len(variants) + 3))
    print("\n".join(rows))
    _harness.write_json(args.json, payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
