"""Figure 1: proximity-graph build time, ours vs the authors' approach, and in-degree statistics.

    python -m benchmarks.bench_graph_build [--repeats 3] [--sizes 100000 1000000] [--json out.json]
    python -m benchmarks.bench_graph_build --device cuda [--sizes 1000000 10000000] [--precision float32 bfloat16]

``--device``: the device build (``ProximityGraph.build(..., device=...)``, embeddings already on
the device, as a training loop's bank is) against FAISS-GPU's exact kNN (``faiss.knn_gpu`` on
unit rows, K + 1 results, where FAISS's GPU build is installed; above ``--faiss-queries`` rows
a prefix of queries is timed and extrapolated linearly, its cost per query being independent
of how many there are) and against the NumPy CPU build, default sizes 1e6 and 1e7. With
``--device cuda`` and no CUDA device it prints "not measured on a GPU: no CUDA device" and
exits 0. ``--device cpu`` runs the torch path on the CPU (a check that the script works).

Embeddings: clustered synthetic data (``benchmarks._harness.clustered``), d = 128, K = 100,
M = 1000. The naive baseline (``benchmarks/naive.py``) is run on all nodes where that takes
under ~1 minute, else on a prefix of nodes, and extrapolated linearly (its cost per node does
not depend on N); its chunk tensor is sized for 1/20 of N as in the released script, capped at
2.5 GB so that it fits in memory (at N = 1e6 the released script's 25.6 GB tensor would not).
For a prefix, that tensor is allocated and faulted in before the clock starts, so the
extrapolation does not charge a one-off cost N / prefix times (full runs include it).
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from benchmarks import _harness

_NAIVE_FULL_LIMIT = 100_000  # nodes; above, time a prefix
_NAIVE_PREFIX = 20_000
_FAISS_QUERY_CHUNK = 1 << 16


def in_degree_stats(neighbors: np.ndarray, num_nodes: int) -> dict[str, float]:
    in_degrees = np.bincount(neighbors.ravel(), minlength=num_nodes)
    return {
        "no_in_edge": float(np.mean(in_degrees == 0)),
        "in_min": int(in_degrees.min()),
        "in_p1": float(np.percentile(in_degrees, 1)),
        "in_median": float(np.median(in_degrees)),
        "in_p99": float(np.percentile(in_degrees, 99)),
        "in_max": int(in_degrees.max()),
    }


def run_worker(case: dict) -> dict:
    import torch

    x = _harness.clustered(case["n"], case.get("dim", 128), seed=case.get("data_seed", 0))
    if case["impl"] in ("device", "faiss_gpu_exact"):
        return _run_device_case(case, x)
    if case["impl"] == "naive":
        from benchmarks.naive import naive_graph

        torch.set_num_threads(case.get("threads", 1))
        nodes = min(case["n"], case.get("max_nodes") or case["n"])
        chunks = max(20, -(-case["n"] * case["m"] * x.shape[1] * 4 // (2_500 << 20)))
        workspace = None
        if nodes < case["n"]:  # a prefix: its chunk tensor is allocated and faulted in untimed
            workspace = torch.zeros((-(-case["n"] // chunks), case["m"], x.shape[1]))
        seconds, cpu, neighbors = _harness.timed_cpu(
            naive_graph, x, case["k"], case["m"], chunks=chunks, max_nodes=nodes, workspace=workspace
        )
        result = {"seconds": seconds * case["n"] / nodes, "cpu_s": cpu * case["n"] / nodes, "measured_nodes": nodes}
        if nodes == case["n"]:
            result.update(in_degree_stats(neighbors, case["n"]))
        return result
    from batchsampler import ProximityGraph

    _harness.warm_up()
    seconds, cpu, graph = _harness.timed_cpu(
        ProximityGraph.build, x, case["k"], case["m"], seed=case.get("seed", 0),
        num_threads=case.get("threads"), backend=case.get("backend", "random"),
        keep_scores=case.get("keep_scores", True),
    )
    result = {"seconds": seconds, "cpu_s": cpu}
    result.update(in_degree_stats(graph.neighbors, case["n"]))
    return result


def _run_device_case(case: dict, x: np.ndarray) -> dict:
    """One device case in this process: ``impl`` ``"device"`` (our build) or ``"faiss_gpu_exact"``."""
    import torch

    device = torch.device(case["device"])
    cuda = device.type == "cuda"

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(device)

    tensor = torch.from_numpy(x).to(device)  # the bank lives there: the copy is not timed
    if case["impl"] == "device":
        from batchsampler import ProximityGraph

        _harness.warm_up()
        options = dict(device=device, precision=case["precision"], num_threads=case.get("threads"))
        ProximityGraph.build(tensor[:5000], 10, 100, **options)  # CUDA context, cuBLAS, kernels
        sync()
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
        seconds, cpu, graph = _harness.timed_cpu(
            ProximityGraph.build, tensor, case["k"], case["m"], seed=case.get("seed", 0),
            keep_scores=case.get("keep_scores", True), **options,
        )
        result = {"seconds": seconds, "cpu_s": cpu}
        if cuda:
            result["gpu_peak_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
        result.update(in_degree_stats(graph.neighbors, case["n"]))
        return result
    import faiss
    import faiss.contrib.torch_utils  # noqa: F401  (torch tensors in faiss.knn_gpu)

    resources = faiss.StandardGpuResources()
    unit = torch.nn.functional.normalize(tensor, dim=1)
    if case["precision"] != "float32":
        unit = unit.to(getattr(torch, case["precision"]))
    gpu = device.index if device.index is not None else torch.cuda.current_device()
    faiss.knn_gpu(resources, unit[:1000], unit, case["k"] + 1, metric=faiss.METRIC_INNER_PRODUCT, device=gpu)
    sync()
    queries = min(case["n"], case.get("max_queries") or case["n"])

    def search() -> None:
        for start in range(0, queries, _FAISS_QUERY_CHUNK):
            chunk = unit[start : min(queries, start + _FAISS_QUERY_CHUNK)]
            faiss.knn_gpu(resources, chunk, unit, case["k"] + 1, metric=faiss.METRIC_INNER_PRODUCT, device=gpu)
        sync()

    torch.cuda.reset_peak_memory_stats(device)
    seconds, cpu, _ = _harness.timed_cpu(search)
    scale = case["n"] / queries
    return {
        "seconds": seconds * scale, "cpu_s": cpu * scale, "measured_queries": queries,
        "gpu_peak_gb": torch.cuda.max_memory_allocated(device) / 2**30,
    }


def device_main(args: argparse.Namespace) -> int:
    """``--device``: device build vs FAISS-GPU exact kNN vs the NumPy CPU build."""
    import torch

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("not measured on a GPU: no CUDA device (torch.cuda.is_available() is False)")
        return 0
    from batchsampler._torch_build import faiss_gpu_count

    gpu_name = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    with_faiss = device.type == "cuda" and faiss_gpu_count() > 0
    precisions = args.precision or (["float32", "bfloat16"] if device.type == "cuda" else ["float32"])
    payload = {"machine": {**_harness.machine(), "gpu": gpu_name}, "device": str(device), "cases": []}
    rows = []
    for n in args.sizes or [1_000_000, 10_000_000]:
        base = {"n": n, "k": 100, "m": 1000}
        cpu_runs = _harness.repeat_case("bench_graph_build", {**base, "impl": "ours", "threads": args.threads}, args.repeats)
        cpu_median = np.median([r["seconds"] for r in cpu_runs])
        entry = {"n": n, "cpu": cpu_runs}
        for precision in precisions:
            case = {**base, "impl": "device", "device": str(device), "precision": precision, "threads": args.threads}
            runs = _harness.repeat_case("bench_graph_build", case, args.repeats)
            faiss_runs = None
            if with_faiss:
                faiss_case = {**base, "impl": "faiss_gpu_exact", "device": str(device), "precision": precision,
                              "max_queries": args.faiss_queries}
                faiss_runs = _harness.repeat_case("bench_graph_build", faiss_case, args.repeats)
            entry[precision] = {"device": runs, "faiss_gpu_exact": faiss_runs}
            if faiss_runs is not None:
                faiss_text = _harness.fmt([r["seconds"] for r in faiss_runs])
            else:
                faiss_text = "FAISS without GPU support" if device.type == "cuda" else "- (not a GPU)"
            if faiss_runs is not None and faiss_runs[0]["measured_queries"] < n:
                faiss_text += f" (from {faiss_runs[0]['measured_queries']:,} queries)"
            peak = _harness.fmt([r["gpu_peak_gb"] for r in runs]) if "gpu_peak_gb" in runs[0] else "-"
            speedup = cpu_median / np.median([r["seconds"] for r in runs])
            rows.append(
                f"| {n:,} | {device} | {precision} | {_harness.fmt([r['seconds'] for r in runs])} "
                f"| {_harness.fmt([r['cpu_s'] for r in runs])} | {peak} | {faiss_text} "
                f"| {_harness.fmt([r['seconds'] for r in cpu_runs])} | {speedup:.1f}x | {runs[0]['no_in_edge']:.4%} |"
            )
        payload["cases"].append(entry)
    print(f"device: {device}" + (f" ({gpu_name})" if gpu_name else ""))
    print("| N | device | precision | device build s | its CPU s | GPU peak GB | FAISS-GPU exact kNN s | CPU build s | speed-up vs CPU | no in-edge |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    _harness.write_json(args.json, payload)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+", default=None,
                        help="default: 100000 1000000 (with --device: 1000000 10000000)")
    parser.add_argument("--threads", type=int, default=None, help="num_threads of our build (default: all cores)")
    parser.add_argument("--naive-repeats", type=int, default=None, help="default: --repeats")
    parser.add_argument("--device", help="time the device build on this torch device (cuda, cuda:1, cpu)")
    parser.add_argument("--precision", nargs="+", choices=["float32", "bfloat16", "float16"], default=None,
                        help="precisions of the device build (default: float32 bfloat16 on CUDA, float32 on the CPU)")
    parser.add_argument("--faiss-queries", type=int, default=1_000_000,
                        help="FAISS-GPU exact kNN: time at most this many queries, extrapolate to N")
    parser.add_argument("--json", help="write all results here")
    args = parser.parse_args(argv)
    if args.case:
        print(json.dumps(run_worker(json.loads(args.case))))
        return 0
    if args.device:
        return device_main(args)
    args.sizes = args.sizes or [100_000, 1_000_000]
    payload = {"machine": _harness.machine(), "cases": []}
    rows = []
    for n in args.sizes:
        base = {"n": n, "k": 100, "m": 1000}
        ours = _harness.repeat_case("bench_graph_build", {**base, "impl": "ours", "threads": args.threads}, args.repeats)
        prefix = None if n <= _NAIVE_FULL_LIMIT else _NAIVE_PREFIX
        naive = _harness.repeat_case(
            "bench_graph_build", {**base, "impl": "naive", "max_nodes": prefix}, args.naive_repeats or args.repeats
        )
        payload["cases"].append({"n": n, "ours": ours, "naive": naive})
        ratio = np.median([r["seconds"] for r in naive]) / np.median([r["seconds"] for r in ours])
        first = ours[0]
        naive_no_in = f"{naive[0]['no_in_edge']:.4%}" if "no_in_edge" in naive[0] else "-"
        source = "" if prefix is None else f" (from {prefix:,} nodes)"
        rows.append(
            f"| {n:,} | {_harness.fmt([r['seconds'] for r in ours])} | {_harness.fmt([r['cpu_s'] for r in ours])} "
            f"| {_harness.fmt([r['peak_rss_mb'] / 1024 for r in ours])} "
            f"| {_harness.fmt([r['seconds'] for r in naive], 1)}{source} "
            f"| {_harness.fmt([r['peak_rss_mb'] / 1024 for r in naive])} | {ratio:.0f}x "
            f"| {first['no_in_edge']:.4%} | {first['in_min']} / {first['in_p1']:.0f} / {first['in_median']:.0f} "
            f"/ {first['in_p99']:.0f} / {first['in_max']} | {naive_no_in} |"
        )
    print("| N | ours s | ours CPU s | ours peak GB | naive s | naive peak GB | speed-up | no in-edge (ours) | in-degree min / p1 / median / p99 / max (ours) | no in-edge (naive) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    _harness.write_json(args.json, payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
