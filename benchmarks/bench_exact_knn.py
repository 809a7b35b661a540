"""Figure 3: the true kNN graph (M = N): our exact backend, FAISS flat, HNSW and IVF.

    python -m benchmarks.bench_exact_knn [--repeats 3] [--n 100000] [--k 32] [--json out.json]

Clustered synthetic data, d = 128. ``exact`` is ``ProximityGraph.build(..., backend="exact")``
(blocked all-pairs GEMM using the symmetry of the similarity matrix, per-node heaps);
``faiss-flat`` is the previous implementation, a FAISS ``IndexFlatIP`` searched for k + 1
neighbours; ``hnsw`` and ``ivf`` are our FAISS backends with their default settings. Recall@K
is the share of the exact neighbours found (the exact result is saved by the first case).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from benchmarks import _harness

_REFERENCE = Path(tempfile.gettempdir()) / "batchsampler_bench_exact_{n}_{k}.npy"


def recall(found: np.ndarray, exact: np.ndarray) -> float:
    """Share of each row's exact neighbours present in ``found`` (ids, any order)."""
    hits = sum(np.intersect1d(a, b, assume_unique=True).size for a, b in zip(found, exact))
    return hits / exact.size


def run_worker(case: dict) -> dict:
    n, k, method = case["n"], case["k"], case["method"]
    x = _harness.clustered(n, 128, seed=0)
    threads = case.get("threads")
    reference = Path(str(_REFERENCE).format(n=n, k=k))
    if method == "faiss-flat":
        import faiss

        if threads:
            faiss.omp_set_num_threads(threads)
        unit = x / np.linalg.norm(x, axis=1, keepdims=True)

        def flat():
            index = faiss.IndexFlatIP(unit.shape[1])
            index.add(unit)
            return index.search(unit, k + 1)[1]

        seconds, cpu, ids = _harness.timed_cpu(flat)
        neighbors = np.array([row[row != i][:k] for i, row in enumerate(ids)])
    else:
        from batchsampler import ProximityGraph

        _harness.warm_up()
        seconds, cpu, graph = _harness.timed_cpu(ProximityGraph.build, x, k, n, backend=method, seed=0, num_threads=threads)
        neighbors = graph.neighbors
    result = {"seconds": seconds, "cpu_s": cpu}
    if method == "exact":
        np.save(reference, neighbors)
    if reference.exists():
        result["recall"] = recall(neighbors, np.load(reference))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--methods", nargs="+", default=["exact", "faiss-flat", "hnsw", "ivf"])
    parser.add_argument("--flat-repeats", type=int, default=None, help="repeats of faiss-flat (slow; default --repeats)")
    parser.add_argument("--json", help="write all results here")
    args = parser.parse_args(argv)
    if args.case:
        print(json.dumps(run_worker(json.loads(args.case))))
        return 0
    payload = {"machine": _harness.machine(), "cases": {}}
    for method in args.methods:
        repeats = args.flat_repeats or args.repeats if method == "faiss-flat" else args.repeats
        payload["cases"][method] = _harness.repeat_case("bench_exact_knn", {"n": args.n, "k": args.k, "method": method}, repeats)
    exact = np.median([r["seconds"] for r in payload["cases"].get("exact", [{"seconds": np.nan}])])
    print(f"| method (N = {args.n:,}, K = {args.k}) | seconds | CPU s | peak GB | recall@K | time vs exact |")
    print("|---|---|---|---|---|---|")
    for method, results in payload["cases"].items():
        seconds = [r["seconds"] for r in results]
        recall_cell = f"{results[0]['recall']:.4f}" if "recall" in results[0] else "-"
        print(
            f"| {method} | {_harness.fmt(seconds, 1)} | {_harness.fmt([r['cpu_s'] for r in results], 1)} "
            f"| {_harness.fmt([r['peak_rss_mb'] / 1024 for r in results])} "
            f"| {recall_cell} | {np.median(seconds) / exact:.2f}x |"
        )
    _harness.write_json(args.json, payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
