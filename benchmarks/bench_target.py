"""What a ``target_hardness`` costs: the calibrated build and the epoch of candidate walks.

    python -m benchmarks.bench_target [--n 20000] [--batch-size 256] [--rounds 5] [--json out.json]

One bank (clustered data, d = 128). Every round builds, in turn, three samplers on it from
scratch (``BatchSampler(n, B, embeddings=...)``: the first graph build) and walks one exactly-once
epoch with each:

* the defaults (no target: one build at K = 100, M = 1000);
* ``target_hardness=0.5, candidate_walks=1``: the search (up to 6 builds, each measured on a
  simulated epoch), one walk per group;
* ``target_hardness=0.5`` with its defaults: the same search plus the per-position record of
  what the rest of an epoch adds (measured on the kept setting's simulated epoch), and
  ``clip(ceil(256 / batches), 1, 8)`` candidate walks per group, each measured on the bank.

The second and third share the search, so their build difference is the rest-of-epoch record
and their epoch difference the candidate walks. Numba kernels are compiled on a small bank
first, untimed. Reports median (min-max) over the rounds; variants are interleaved round by
round, so they share a busy machine alike.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from benchmarks import _harness

VARIANTS = {
    "defaults (no target)": {},
    "target 0.5, candidate_walks=1": {"target_hardness": 0.5, "candidate_walks": 1},
    "target 0.5 (defaults)": {"target_hardness": 0.5},
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", help="write all results here")
    args = parser.parse_args(argv)

    from batchsampler import BatchSampler

    def run(embeddings: np.ndarray, seed: int, options: dict) -> tuple[float, float, BatchSampler]:
        start = time.perf_counter()
        sampler = BatchSampler(len(embeddings), args.batch_size, seed=seed, embeddings=embeddings, **options)
        built = time.perf_counter()
        batches = list(sampler)
        walked = time.perf_counter()
        assert np.array_equal(np.sort(np.concatenate(batches)), np.arange(len(embeddings)))
        return built - start, walked - built, sampler

    _harness.warm_up()
    small = _harness.clustered(2_000, 128, seed=1)
    for options in VARIANTS.values():
        run(small, 0, options)
    embeddings = _harness.clustered(args.n, 128, seed=0)
    seconds = {name: {"build": [], "epoch": []} for name in VARIANTS}
    settings = {}
    for round_ in range(args.rounds):
        for name, options in VARIANTS.items():
            build, epoch, sampler = run(embeddings, round_, options)
            seconds[name]["build"].append(build)
            seconds[name]["epoch"].append(epoch)
            settings[name] = {"candidate_walks": sampler.candidate_walks, "batches": len(sampler),
                              "k": sampler.refresh_stats.k, "m": sampler.refresh_stats.m}
        print(f"round {round_}: " + ", ".join(
            f"{name} {values['build'][-1]:.3f} + {values['epoch'][-1]:.3f} s" for name, values in seconds.items()),
            flush=True)
    print(f"\n| variant (N = {args.n:,}, B = {args.batch_size}) | first build s | epoch s | candidate walks |\n"
          "|---|---|---|---|")
    for name, values in seconds.items():
        print(f"| {name} | {_harness.fmt(values['build'], 3)} | {_harness.fmt(values['epoch'], 3)} | "
              f"{settings[name]['candidate_walks']} |")
    _harness.write_json(args.json, {"machine": _harness.machine(), "n": args.n, "batch_size": args.batch_size,
                                    "seconds": seconds, "settings": settings})
    return 0


if __name__ == "__main__":
    sys.exit(main())
