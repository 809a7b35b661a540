"""Per-rank cost of a background graph build at world sizes 1, 2, 3 (gloo on localhost).

For every world size ``W`` and repeat, ``W`` fresh processes are spawned (torch.multiprocessing,
gloo, a file rendezvous). Each loads the same embeddings (``benchmarks._harness.clustered``,
written once by the parent), fills its bank, requests one background build
(``refresh(blocking=False)``) and waits for it. It reports:

* build-thread CPU seconds: ``time.thread_time()`` inside the build thread. With
  ``--threads 1`` (the default) the build runs entirely in that thread, so this is the whole
  CPU cost of the rank's share (and of its part of the exchange, minus gloo's own threads);
* process CPU seconds over the build (all threads, gloo's included; the main thread only waits);
* wall seconds from the request to the finished build;
* memory once the new graph is swapped in and every page of it touched (as walks do):
  ``VmRSS`` (counts a shared page in every rank that maps it), ``Pss`` from
  ``/proc/self/smaps_rollup`` (a shared page split between the ranks mapping it: the sum over
  ranks is the node's real memory), ``RssShmem``, and the build's peak ``VmHWM`` (reset just
  before the build).

Modes (``W > 1``): ``shared`` (the default behaviour: rows sharded, the table in shared memory
once per node), ``private`` (sharded, ``BATCHSAMPLER_SHARED_MEMORY=0``: every rank gets all rows
over gloo into a private table), ``whole`` (the behaviour before sharding: every rank builds the
whole graph itself). ``W = 1`` is the single-process background build.

    python -m benchmarks.bench_distributed_build                      # N = 1e6, W = 1, 2, 3
    python -m benchmarks.bench_distributed_build --quick              # N = 1e5
    python -m benchmarks.bench_distributed_build --n 300000 --modes shared private whole --repeats 3
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make ``benchmarks`` importable here and in the ranks
    sys.path.insert(0, str(ROOT))

from benchmarks._harness import clustered, machine, warm_up, write_json


def _kb_field(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1]) / 1024
    return None


def _memory() -> dict[str, float | None]:
    """MB: resident (VmRSS), peak (VmHWM), proportional (Pss), resident shared memory (RssShmem)."""
    status = Path("/proc/self/status").read_text()
    out = {
        "rss_mb": _kb_field(status, "VmRSS"), "hwm_mb": _kb_field(status, "VmHWM"),
        "rss_shmem_mb": _kb_field(status, "RssShmem"), "pss_mb": None,
    }
    try:
        out["pss_mb"] = _kb_field(Path("/proc/self/smaps_rollup").read_text(), "Pss")
    except OSError:
        pass
    return out


def _reset_peak() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # Linux >= 4.0: VmHWM := VmRSS
    except OSError:
        pass


def _rank(rank: int, world: int, workdir: str, args: dict) -> None:
    import torch.distributed as dist

    from batchsampler import BatchSampler

    if args["mode"] == "private":
        os.environ["BATCHSAMPLER_SHARED_MEMORY"] = "0"
    if world > 1:
        dist.init_process_group(
            "gloo", init_method=f"file://{workdir}/rendezvous", rank=rank, world_size=world,
            timeout=datetime.timedelta(seconds=args["timeout"]),
        )
    warm_up()
    data = np.load(os.path.join(workdir, "embeddings.npy"), mmap_mode="r")
    n = data.shape[0]
    sampler = BatchSampler(
        n, 8, k=args["k"], m=args["m"], seed=0, swap_delay=0, num_threads=args["threads"], distributed=world > 1,
    )
    sampler.bank.update(np.arange(n), data)  # every rank the same rows (no collective needed here)
    del data
    if args["mode"] == "whole":
        sampler._build_group = None  # as before sharding: every rank builds the whole graph
    before = _memory()
    builds = []
    for _ in range(args["builds"]):  # the first build faults in fresh memory; later ones reuse some
        if world > 1:
            dist.barrier()
        _reset_peak()
        load = os.getloadavg()[0]
        start, cpu = time.perf_counter(), time.process_time()
        sampler.refresh(blocking=False)
        pending = sampler._pending
        pending.get()
        wall, process_cpu = time.perf_counter() - start, time.process_time() - cpu
        peak = _memory()["hwm_mb"]
        sampler._swap_pending(force=True)  # the previous graph is freed here (its table unmapped)
        graph = sampler.graph
        touched = int(np.add.reduce(graph.indices, dtype=np.int64)) + float(np.add.reduce(graph.scores))
        builds.append({
            "rows": pending.rows if pending.rows is not None else n, "thread_cpu_s": pending.cpu_seconds,
            "process_cpu_s": process_cpu, "wall_s": wall, "shared": pending.shared, "load_1min": load,
            "build_peak_mb": peak, "checksum": touched,
        })
        del pending, graph
    if world > 1:
        dist.barrier()  # every rank maps and has touched its table: Pss splits shared pages right
    after = _memory()
    result = {
        "rank": rank, "world": world, "mode": args["mode"], "builds": builds, **builds[-1],
        "first_thread_cpu_s": builds[0]["thread_cpu_s"], "before": before, "after": after,
    }
    Path(workdir, f"rank{rank}.json").write_text(json.dumps(result))
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    sampler.close()


def run_world(world: int, mode: str, data_path: str, args: argparse.Namespace) -> list[dict]:
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory(prefix="bench-dist-") as workdir:
        os.symlink(data_path, os.path.join(workdir, "embeddings.npy"))
        options = {
            "k": args.k, "m": args.m, "threads": args.threads, "mode": mode, "timeout": args.timeout,
            "builds": args.builds,
        }
        context = mp.start_processes(_rank, args=(world, workdir, options), nprocs=world, join=False, start_method="spawn")
        deadline = time.monotonic() + args.timeout
        try:
            while not context.join(timeout=5):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"W={world} {mode}: ranks still running after {args.timeout}s")
        finally:
            for process in context.processes:
                if process.is_alive():
                    process.kill()
        return [json.loads(Path(workdir, f"rank{r}.json").read_text()) for r in range(world)]


def _spread(values: list[float], digits: int = 2) -> str:
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def _per_rank(repeats: list[list[dict]], key: str) -> list[float]:
    """Per repeat, the mean over ranks of ``key``."""
    return [statistics.mean(r[key] for r in ranks) for ranks in repeats]


def _node(repeats: list[list[dict]], key: str) -> list[float]:
    """Per repeat, the sum over ranks of memory field ``key`` after the last build, GB."""
    return [sum(r["after"][key] or 0 for r in ranks) / 1024 for ranks in repeats]


def summarise(runs: dict[tuple[int, str], list[list[dict]]]) -> str:
    """A markdown table: medians (min-max) over repeats; per-rank values are the mean over ranks.

    CPU and wall figures are those of the last build of each run (later builds reuse memory the
    first one faulted in, as a training run's refreshes do); "first build" is the first one's.
    """
    single = runs.get((1, "single"), [])
    base = statistics.median(_per_rank(single, "thread_cpu_s")) if single else None
    first_base = statistics.median(_per_rank(single, "first_thread_cpu_s")) if single else None
    lines = [
        (
            "| W | mode | rows per rank | build-thread CPU s per rank | vs W = 1 | first build: CPU s, vs W = 1 "
            "| process CPU s per rank | wall s | node RSS GB (sum) | node PSS GB (sum) "
            "| build peak GB (sum of VmHWM) | load (1 min) |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (world, mode), repeats in runs.items():
        thread, first = _per_rank(repeats, "thread_cpu_s"), _per_rank(repeats, "first_thread_cpu_s")
        ratio = "" if base is None else _spread([t / base for t in thread])
        first_ratio = "" if first_base is None else ", " + _spread([t / first_base for t in first])
        lines.append(
            f"| {world} | {mode} | {round(statistics.mean(_per_rank(repeats, 'rows')))} | {_spread(thread)} | {ratio} "
            f"| {_spread(first)}{first_ratio} | {_spread(_per_rank(repeats, 'process_cpu_s'))} "
            f"| {_spread([max(r['wall_s'] for r in ranks) for ranks in repeats])} "
            f"| {_spread(_node(repeats, 'rss_mb'))} | {_spread(_node(repeats, 'pss_mb'))} "
            f"| {_spread([sum(r['build_peak_mb'] for r in ranks) / 1024 for ranks in repeats])} "
            f"| {_spread([max(r['load_1min'] for r in ranks) for ranks in repeats], 1)} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=float, default=1e6)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--m", type=int, default=1000)
    parser.add_argument("--worlds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--modes", nargs="+", default=["shared"], choices=["shared", "private", "whole"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--builds", type=int, default=2, help="background builds per run (the last is reported)")
    parser.add_argument("--threads", type=int, default=1, help="build threads per rank (default 1)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds before a run's ranks are killed")
    parser.add_argument("--quick", action="store_true", help="N = 1e5, 1 repeat")
    parser.add_argument("--json", help="write every rank's measurements here")
    args = parser.parse_args()
    if args.quick:
        args.n, args.repeats = 1e5, 1
    n = int(args.n)
    info = machine()
    print(f"machine: {info}", file=sys.stderr)
    runs: dict[tuple[int, str], list[list[dict]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-dist-data-") as tmp:
        data_path = os.path.join(tmp, "embeddings.npy")
        np.save(data_path, clustered(n, args.dim))
        cases = [(w, "single") if w == 1 else (w, mode) for w in args.worlds for mode in args.modes]
        cases = list(dict.fromkeys(cases))
        for repeat in range(args.repeats):  # interleaved, so a change of load hits every case
            for world, mode in cases:
                ranks = run_world(world, mode, data_path, args)
                runs.setdefault((world, mode), []).append(ranks)
                brief = ", ".join(f"r{r['rank']}: {r['rows']} rows {r['thread_cpu_s']:.2f} CPU s" for r in ranks)
                print(f"  repeat {repeat} W={world} {mode}: {brief}, wall {max(r['wall_s'] for r in ranks):.2f} s, "
                      f"load {os.getloadavg()[0]:.1f}", file=sys.stderr, flush=True)
    print(f"N = {n}, d = {args.dim}, K = {args.k}, M = {args.m}, {args.threads} build thread(s) per rank, "
          f"{args.builds} builds per run (the last reported), {args.repeats} repeats: median (min-max)")
    print(summarise(runs))
    write_json(args.json, {
        "machine": info, "n": n, "dim": args.dim, "k": args.k, "m": args.m, "threads": args.threads, "builds": args.builds,
        "runs": [{"world": w, "mode": mode, "repeats": reps} for (w, mode), reps in runs.items()],
    })


if __name__ == "__main__":
    main()
