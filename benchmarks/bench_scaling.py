"""Figure 4: cost against N (1e4 .. 1e7): graph build and one epoch, seconds and peak memory.

    python -m benchmarks.bench_scaling [--repeats 3] [--sizes 10000 100000 1000000 10000000] [--json out.json]

Clustered synthetic data, d = 128, K = 100, M = 1000, B = 512, alpha = 0.2. Each size runs in
a fresh process: data generation (untimed), build (timed), one exactly-once epoch (timed).
The peak RSS includes the embeddings themselves (``N * d * 4`` bytes, reported as "data GB")
and the graph (``N * K * 8`` bytes with scores). Sizes of 1e7 and above build without scores
(``keep_scores=False``) to fit in memory; ``--walk-max`` skips the epoch above a size.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from benchmarks import _harness


def run_worker(case: dict) -> dict:
    from batchsampler import ProximityGraph
    from batchsampler.walk import random_walk_batches

    _harness.warm_up()
    x = _harness.clustered(case["n"], 128, seed=0)
    build, cpu, graph = _harness.timed_cpu(ProximityGraph.build, x, 100, 1000, seed=0, keep_scores=case["keep_scores"])
    del x
    result = {"build_s": build, "build_cpu_s": cpu, "no_in_edge": float(np.mean(graph.in_degrees() == 0))}
    if case["walk"]:
        rng = np.random.default_rng(0)
        result["epoch_s"], _ = _harness.timed(lambda: list(random_walk_batches(graph, 512, 0.2, rng)))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000, 10_000_000])
    parser.add_argument("--big-repeats", type=int, default=1, help="repeats for sizes >= 1e7")
    parser.add_argument("--walk-max", type=int, default=10_000_000, help="largest size with a timed epoch")
    parser.add_argument("--json", help="write all results here")
    args = parser.parse_args(argv)
    if args.case:
        print(json.dumps(run_worker(json.loads(args.case))))
        return 0
    payload = {"machine": _harness.machine(), "cases": []}
    print("| N | build s | build CPU s | epoch s | peak GB | data GB | build s per 1e6 nodes | no in-edge |")
    print("|---|---|---|---|---|---|---|---|")
    for n in args.sizes:
        case = {"n": n, "keep_scores": n < 10_000_000, "walk": n <= args.walk_max}
        results = _harness.repeat_case("bench_scaling", case, args.big_repeats if n >= 10_000_000 else args.repeats)
        payload["cases"].append({"n": n, **case, "results": results})
        build = [r["build_s"] for r in results]
        epoch = _harness.fmt([r["epoch_s"] for r in results], 3) if case["walk"] else "-"
        scores = "" if case["keep_scores"] else " (no scores)"
        print(
            f"| {n:,}{scores} | {_harness.fmt(build)} | {_harness.fmt([r['build_cpu_s'] for r in results])} | {epoch} | {_harness.fmt([r['peak_rss_mb'] / 1024 for r in results])} "
            f"| {n * 128 * 4 / 2**30:.3f} | {np.median(build) / n * 1e6:.2f} | {results[0]['no_in_edge']:.4%} |",
            flush=True,
        )
    _harness.write_json(args.json, payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
