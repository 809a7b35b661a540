"""Real multi-process runs over torch.distributed (gloo, CPU) with 2 and 3 ranks."""

import json
import sys
import time
from pathlib import Path

import pytest
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).parent))
import _distributed_worker as worker  # noqa: E402  (spawned children import it by name)


SPAWN_TIMEOUT = 240  # seconds: a liveness bound for a hung rank, far above a normal run


def _spawn(function, world_size, tmp_path, *args, timeout=SPAWN_TIMEOUT):
    """Run ``function`` on ``world_size`` gloo ranks; return each rank's JSON result.

    A rank that hangs is killed after ``timeout`` seconds and the test fails, naming it.
    """
    context = mp.start_processes(
        function, args=(world_size, str(tmp_path), *args), nprocs=world_size, join=False, start_method="spawn"
    )
    deadline = time.monotonic() + timeout
    try:
        while not context.join(timeout=max(0.1, min(5.0, deadline - time.monotonic()))):
            if time.monotonic() >= deadline:
                break
    except mp.ProcessExitedException:
        # Under load, gloo's teardown after deliberate errors has aborted a rank (SIGABRT) after
        # every rank had written its result; the results decide, a missing one fails below.
        pass
    finally:
        hung = [rank for rank, process in enumerate(context.processes) if process.is_alive()]
        for process in context.processes:
            if process.is_alive():
                process.kill()
                process.join()
    missing = [r for r in range(world_size) if not (tmp_path / f"rank{r}.json").exists()]
    if missing:
        pytest.fail(f"ranks {missing} wrote no result (still running after {timeout}s: {hung})")
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


def _same_on_every_rank(results, key):
    messages = [r[key] for r in results]
    assert messages[0] is not None and all(m == messages[0] for m in messages), messages
    return messages[0]


def test_context_mismatches_raise_the_same_error_on_every_rank(tmp_path):
    results = _spawn(worker.context_checks, 2, tmp_path)
    assert all(r["equal"] is None for r in results), [r["equal"] for r in results]
    expected = {
        "k": "ValueError: k must be identical on every rank, got 10 on rank 0 and 20 on rank 1",
        "seed": "ValueError: seed must be identical on every rank, got 9223372036854775808 on rank 0 and "
        "9223372036854775809 on rank 1",
        "float": "ValueError: restart_prob must be identical on every rank, got 0.25 on rank 0 and 0.2 on rank 1",
        "str": "ValueError: backend must be identical on every rank, got 'random' on rank 0 and 'faiss' on rank 1",
        "dict": "ValueError: index_params must be identical on every rank, got {'M': 8} on rank 0 and "
        "{'M': 16} on rank 1",
        "none": "ValueError: refresh_every must be identical on every rank, got 4 on rank 0 and None on rank 1",
        "bool": "ValueError: drop_last must be identical on every rank, got False on rank 0 and True on rank 1",
        "missing": "ValueError: m must be identical on every rank, got 3 on rank 0 and nothing on rank 1",
        "update_calls": "RuntimeError: update() calls out of step across ranks: rank 0 is at call 5 and rank 1 "
        "at call 4 (calls counted from 0; every rank must call update() at every step)",
        "update_vs_refresh": "RuntimeError: ranks are out of step: rank 0 is in update() at call 1 and rank 1 is "
        "in a blocking refresh() after 1 update() calls",
        "check_counts": "RuntimeError: update() calls out of step across ranks at a blocking refresh(): update() "
        "was called 3 times on rank 0 and 2 times on rank 1",
        "construct_vs_update": "RuntimeError: ranks are out of step: rank 0 is constructing a sampler and rank 1 "
        "is in update() at call 0",
        "rows_layout": "ValueError: arrays to all-gather must have the same dtype and row shape on every rank, got "
        "float32 rows of shape (3,) on rank 0 and float32 rows of shape (4,) on rank 1",
        "dims": "ValueError: embeddings must have the same dimension on every rank, got 3 on rank 0 and 4 on rank 1",
    }
    for key, message in expected.items():
        assert _same_on_every_rank(results, key).startswith(message), (key, results[0][key])
    assert all(r["update_first"] is None and r["check_equal"] is None for r in results)
    assert "embeddings contains NaN" in results[1]["nan"]
    assert "update failed on another rank (rank 1; see its error)" in results[0]["nan"]
    # Every rank is still in step after the errors; float64 embeddings travel as float64.
    after = _same_on_every_rank(results, "after")
    assert after == {"rows": [0, 1], "values": [[1.0, 1.0], [1e300, 1e300]], "dtype": "float64"}


MISMATCHES = [
    # name, sampler, common arguments, per-rank arguments
    ("k", "batchsampler", dict(m=20), [dict(k=5), dict(k=10)]),
    ("m", "batchsampler", dict(k=5), [dict(m=20), dict(m=30)]),
    ("swap_delay", "knn", dict(k=5), [dict(swap_delay=2), dict(swap_delay=3)]),
    ("index_params", "knn", dict(k=5), [dict(index_params={"M": 8}), dict(index_params={"M": 16})]),
    ("restart_prob", "batchsampler", dict(k=5, m=20), [dict(restart_prob=0.2), dict(restart_prob=0.3)]),
    ("refresh_every", "batchsampler", dict(k=5, m=20), [dict(refresh_every=4), dict(refresh_every=None)]),
    ("drop_last", "uniform", {}, [dict(drop_last=False), dict(drop_last=True)]),
    ("seed", "batchsampler", dict(k=5, m=20), [dict(seed=2**64), dict(seed=2**64 + 1)]),
]


def test_sampler_arguments_that_differ_between_ranks_raise_on_every_rank(tmp_path):
    # Before this check, a different k aborted the job (gloo SIGABRT) at the first graph build.
    results = _spawn(worker.sampler_mismatches, 2, tmp_path, MISMATCHES)
    for name, _, _, per_rank in MISMATCHES:
        message = _same_on_every_rank(results, name)
        values = [repr(kwargs[name]) for kwargs in per_rank]
        assert message == (
            f"ValueError: {name} must be identical on every rank, got {values[0]} on rank 0 and {values[1]} on rank 1"
        ), message
    assert all(r["after"] == 2 for r in results)


@pytest.mark.parametrize("seed", [2**63])
def test_seeds_beyond_int64_work_distributed_as_on_one_process(tmp_path, seed):
    results = _spawn(worker.big_seed, 2, tmp_path, seed)
    for result in results:
        assert "error" not in result, result["error"]
        assert result["distributed"] == result["single"]
    assert results[0]["distributed"] == results[1]["distributed"]


def test_update_out_of_step_is_named_at_the_next_collective(tmp_path):
    # Rank 0 calls update a second time where rank 1 refreshes: both raise, neither hangs.
    results = _spawn(worker.update_out_of_step, 2, tmp_path)
    message = _same_on_every_rank(results, "error")
    assert message.startswith("RuntimeError: ranks are out of step: rank 0 is in update() at call 1 and rank 1 is in")


def test_single_process_context_checks_nothing():
    from batchsampler.distributed import DistributedContext

    ctx = DistributedContext()
    assert ctx.check_identical(seed=2**80, k=3, index_params={"M": 8}) is None
    assert ctx.check_in_step("update", 5) is None
    indices, embeddings = [1, 2], [[0.0], [1.0]]
    assert ctx.gather_update(indices, embeddings, call_index=7) == (indices, embeddings)


def test_canonical_values_compare_by_value_and_never_by_address():
    import numpy as np

    from batchsampler.distributed import _canonical

    assert _canonical(2**70) != _canonical(2**70 + 1)
    assert _canonical(1) == _canonical(1.0) == _canonical(np.int64(1)) != _canonical(True)
    assert _canonical({"a": 1, "b": [2, 3]}) == _canonical({"b": (2, 3), "a": np.int32(1)})
    assert _canonical(0.1 + 0.2) != _canonical(0.3)  # floats compare exactly
    assert _canonical(object()) == _canonical(object())  # default repr holds an address: type only
    assert _canonical(np.arange(3)) != _canonical(np.arange(1, 4))
