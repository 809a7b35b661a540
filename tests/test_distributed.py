"""Real multi-process runs over torch.distributed (gloo, CPU) with 2 and 3 ranks."""

import json
import sys
from pathlib import Path

import pytest
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).parent))
import _distributed_worker as worker  # noqa: E402  (spawned children import it by name)


def _spawn(function, world_size, tmp_path, *args):
    try:
        mp.spawn(function, args=(world_size, str(tmp_path), *args), nprocs=world_size, join=True)
    except mp.ProcessExitedException:
        # Under load, gloo's teardown after deliberate errors has aborted a rank (SIGABRT) after
        # every rank had written its result; the results decide, a missing one fails below.
        pass
    return [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(world_size)]


@pytest.mark.parametrize(
    "world_size, sampler, background",
    [(2, "batchsampler", True), (3, "batchsampler", False), (2, "knn", True), (3, "uniform", True)],
)
def test_ranks_share_one_global_stream_and_split_it(tmp_path, world_size, sampler, background):
    n, batch_size = 151, 6  # 151 is not a multiple of 6 * world_size: exercises the padded last batch
    config = {
        "n": n, "batch_size": batch_size, "epochs": 3, "sampler": sampler,
        "kwargs": dict(k=5, m=30, seed=5, refresh_every=4, warmup_epochs=1, background=background, swap_delay=2),
    }
    results = _spawn(worker.train, world_size, tmp_path, config)
    for result in results:
        assert "error" not in result, result.get("error")
    reference = results[0]
    global_size = batch_size * world_size
    assert all(r["len"] == reference["len"] == -(-n // global_size) for r in results)
    # Identical global streams, graphs and banks on every rank.
    assert all(r["global"] == reference["global"] for r in results)
    assert all(r["graph"] == reference["graph"] and r["bank"] == reference["bank"] for r in results)
    assert all(r["encoded_ok"] for r in results)
    if sampler != "uniform":
        assert all(r["sharded_equal"] for r in results)
    if sampler != "uniform":
        assert reference["graph"] is not None and reference["versions"][-1] >= 3  # refreshed mid-epoch
    for epoch, global_batches in enumerate(reference["global"]):
        assert len(global_batches) == reference["len"]
        covered = set()
        for index, batch in enumerate(global_batches):
            slices = [r["local"][epoch][index] for r in results]
            assert all(len(s) == len(slices[0]) for s in slices)  # equal per-rank batch sizes
            assert [i for r, s in enumerate(slices) for i in s] != [] and sorted(sum(slices, [])) == sorted(batch)
            assert all(s == batch[r::world_size] for r, s in enumerate(slices))
            covered.update(batch)
        assert covered == set(range(n))  # the epoch covers every index
        flat = [i for batch in global_batches[:-1] for i in batch]
        assert len(flat) == len(set(flat))  # disjoint: no repeats before the (padded) last batch
        last = global_batches[-1]
        assert len(last) % world_size == 0 and len(last) - len(set(last)) == 0
        padding = len(flat) + len(last) - n
        assert 0 <= padding < world_size


def test_mismatched_seeds_and_failed_updates_raise_on_every_rank(tmp_path):
    results = _spawn(worker.mismatched_seed, 2, tmp_path)
    assert all("seed must be identical on every rank" in r["seed"] for r in results)
    assert "embeddings contains NaN" in results[1]["update"]
    assert "update failed on another rank" in results[0]["update"]
