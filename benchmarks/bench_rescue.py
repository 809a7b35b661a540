"""What the rescue walks of ``max_candidate_walks`` cost: epochs of a few large batches.

    python -m benchmarks.bench_rescue [--n 2000] [--batch-size 1280] [--epochs 40] [--json out.json]

One fixed bank (clustered data, d = 128) and a batch a large share of it (the default, 1280 of
2000, is two batches an epoch, as GraphCL's B = 128 on MUTAG's 188 graphs), where one walk's
relative hardness spreads widely and the epoch's last choice is rescued most often. Two samplers
with ``target_hardness=0.5`` walk the same epochs, interleaved epoch by epoch: the defaults (up to
``8 * candidate_walks`` walks at the last choice) and ``max_candidate_walks=candidate_walks`` (no
extra walks). The bank never changes, so an epoch's batches differ between the two only where
the rescue walked more: those are the rescued epochs, and their time against the same epoch
without extra walks is the rescue's cost. Reports median (min-max) epoch seconds, the rescued
share, and how many epochs each variant walks within the band and its inner half.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from benchmarks import _harness

TARGET = 0.5


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2_000)
    parser.add_argument("--batch-size", type=int, default=1_280)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--json", help="write all results here")
    args = parser.parse_args(argv)
    if not 1 <= args.batch_size <= args.n:
        parser.error(f"--batch-size must be in [1, --n], got {args.batch_size}")
    if args.epochs < 1:
        parser.error(f"--epochs must be >= 1, got {args.epochs}")

    from batchsampler import BatchSampler

    def sampler(embeddings: np.ndarray, batch_size: int = args.batch_size, **options) -> BatchSampler:
        return BatchSampler(len(embeddings), batch_size, seed=0, embeddings=embeddings, warmup_epochs=0,
                            background=False, target_hardness=TARGET, **options)

    _harness.warm_up()
    small = _harness.clustered(200, 128, seed=1)
    list(sampler(small, 128, k=10, m=50))  # compile the kernels, untimed
    embeddings = _harness.clustered(args.n, 128, seed=0)
    rescue = sampler(embeddings)
    plain = sampler(embeddings, max_candidate_walks=rescue.candidate_walks)
    names = {"rescue (default)": rescue, "no extra walks": plain}
    seconds: dict[str, list[float]] = {name: [] for name in names}
    planned: dict[str, list[float]] = {name: [] for name in names}
    epochs: dict[str, list[list[list[int]]]] = {name: [] for name in names}
    for _ in range(args.epochs):
        for name, walker in names.items():
            start = time.perf_counter()
            batches = [list(map(int, batch)) for batch in walker]
            seconds[name].append(time.perf_counter() - start)
            epochs[name].append(batches)
            planned[name].append(walker.planned_hardness)
    rescued = [a != b for a, b in zip(epochs["rescue (default)"], epochs["no extra walks"])]
    tolerance = rescue.hardness_tolerance
    print(f"N = {args.n:,}, B = {args.batch_size}, {len(rescue)} batches an epoch, candidate_walks "
          f"{rescue.candidate_walks}, max_candidate_walks {rescue.max_candidate_walks}, {args.epochs} epochs; "
          f"rescued {sum(rescued)} of {args.epochs}\n")
    print("| variant | epoch s, all | epoch s, rescued epochs | as walked within 0.1 | within 0.05 |\n|---|---|---|---|---|")
    for name in names:
        values = np.array(planned[name], dtype=float)
        picked = [s for s, r in zip(seconds[name], rescued) if r]
        print(f"| {name} | {_harness.fmt(seconds[name], 4)} | {_harness.fmt(picked, 4) if picked else '—'} | "
              f"{int((np.abs(values - TARGET) <= tolerance).sum())} | {int((np.abs(values - TARGET) <= tolerance / 2).sum())} |")
    _harness.write_json(args.json, {
        "machine": _harness.machine(), "n": args.n, "batch_size": args.batch_size, "epochs": args.epochs,
        "candidate_walks": rescue.candidate_walks, "max_candidate_walks": rescue.max_candidate_walks,
        "seconds": seconds, "planned_hardness": planned, "rescued": rescued,
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
