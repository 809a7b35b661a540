"""Shared pieces of the benchmark scripts: data, fresh-process runs, peak memory, tables.

Every measured case runs in its own Python process under ``/usr/bin/time -v``, so the peak
resident set size (RSS) is that of the case alone, and repeats do not share caches or memory
already faulted in. Inside the process the compiled kernels are warmed up on a tiny input
first (numba loads them from its cache once per process, ~1 s), then the timed call runs once.
"""

from __future__ import annotations

import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def clustered(n: int, dim: int = 128, seed: int = 0, clusters: int | None = None) -> np.ndarray:
    """float32 ``[n, dim]`` embeddings: Gaussian clusters of Zipf-distributed sizes and spreads.

    Cluster sizes follow a Zipf law (a few large classes, many small ones), each cluster has
    its own spread, so the data has hubs and anti-hubs like real embeddings. Generated in
    chunks of 2**20 rows, so peak memory is the output plus a few hundred MB.
    """
    rng = np.random.default_rng(seed)
    clusters = clusters or max(10, int(np.sqrt(n)))
    weights = 1.0 / np.arange(1, clusters + 1) ** 1.1
    weights /= weights.sum()
    centers = rng.standard_normal((clusters, dim)).astype(np.float32)
    spread = rng.uniform(0.3, 1.2, size=clusters).astype(np.float32)
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 1 << 20):
        stop = min(n, start + (1 << 20))
        labels = rng.choice(clusters, size=stop - start, p=weights)
        noise = rng.standard_normal((stop - start, dim), dtype=np.float32)
        noise *= spread[labels, None]
        noise += centers[labels]
        out[start:stop] = noise
    return out


def warm_up() -> None:
    """Load the compiled kernels (numba cache) so that timed calls measure the work only."""
    from batchsampler import BatchSampler, ProximityGraph
    from batchsampler.walk import neighborhood_batches, random_walk_batches

    x = np.random.default_rng(0).standard_normal((3000, 8)).astype(np.float32)
    for backend in ("random", "exact"):
        graph = ProximityGraph.build(x, k=5, m=50, backend=backend)
    list(random_walk_batches(graph, 64, 0.2, np.random.default_rng(0)))
    list(random_walk_batches(graph, 64, 0.2, np.random.default_rng(0), replacement=True))
    list(neighborhood_batches(graph, 64, np.random.default_rng(0)))
    for lockstep in (1, 16):  # the samplers' kernels (bool masks: their own specialisations)
        list(BatchSampler.from_graph(graph, 64, lockstep_batches=lockstep))


def timed(function, *args, **kwargs) -> tuple[float, Any]:
    """``(wall seconds, result)`` of one call."""
    seconds, _, result = timed_cpu(function, *args, **kwargs)
    return seconds, result


def timed_cpu(function, *args, **kwargs) -> tuple[float, float, Any]:
    """``(wall seconds, CPU seconds of all threads, result)`` of one call.

    On a machine shared with other jobs the wall time depends on their load; the CPU time
    (``time.process_time``) barely does, and CPU / cores bounds the wall time on an idle machine.
    """
    start, cpu = time.perf_counter(), time.process_time()
    result = function(*args, **kwargs)
    return time.perf_counter() - start, time.process_time() - cpu, result


def run_case(script: str, case: dict[str, Any], timeout: float = 3600) -> dict[str, Any]:
    """Run ``python -m benchmarks.<script> --case JSON`` in a fresh process under ``time -v``.

    Returns the JSON object the case printed last, plus ``peak_rss_mb`` and ``process_s``.
    """
    command = ["/usr/bin/time", "-v", sys.executable, "-m", f"benchmarks.{script}", "--case", json.dumps(case)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env, timeout=timeout, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"case {case} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
    result["peak_rss_mb"] = int(rss.group(1)) / 1024 if rss else float("nan")
    result["process_s"] = elapsed
    return result


def repeat_case(script: str, case: dict[str, Any], repeats: int, **kwargs) -> list[dict[str, Any]]:
    results = []
    for _ in range(repeats):
        results.append(run_case(script, case, **kwargs))
        print(f"  {script} {case}: {_brief(results[-1])}", file=sys.stderr, flush=True)
    return results


def _brief(result: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in result.items())


def stats(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def fmt(values: list[float], digits: int = 2) -> str:
    """``median (min-max)`` of several runs."""
    s = stats(values)
    return f"{s['median']:.{digits}f} ({s['min']:.{digits}f}-{s['max']:.{digits}f})"


def machine() -> dict[str, Any]:
    """CPU model, cores, memory, load and library versions, for the results file."""
    import faiss
    import numba
    import torch

    model = "unknown"
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        model = re.search(r"Model name:\s*(.+)", lscpu).group(1).strip()
    except (OSError, AttributeError):
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    probe = "from benchmarks._harness import first_touch_gb_per_s as f; print(f())"
    touch = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=False).stdout.strip()
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gb": round(memory, 1),
        "load_average_at_start": os.getloadavg(),
        "first_touch_gb_per_s": float(touch) if touch else None,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "faiss": faiss.__version__,
        "numba": numba.__version__,
    }


def write_json(path: str | None, payload: dict[str, Any]) -> None:
    if path:
        Path(path).write_text(json.dumps(payload, indent=1, default=float))


def first_touch_gb_per_s(megabytes: int = 512) -> float:
    """Rate at which this process can fault in fresh memory (GB/s); slow on some VMs."""
    start = time.perf_counter()
    block = np.empty(megabytes * 2**18, dtype=np.float32)
    block.fill(1.0)
    return megabytes / 1024 / (time.perf_counter() - start)
