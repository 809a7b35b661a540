"""Worker processes for tests/test_distributed.py (spawned by torch.multiprocessing)."""

import datetime
import hashlib
import json
import os

import numpy as np
import torch
import torch.distributed as dist


# A collective that never pairs up fails after this long instead of hanging the test run
# (the test also kills the processes after its own timeout).
_PG_TIMEOUT = datetime.timedelta(seconds=60)


def _init(rank, world_size, out_dir):
    dist.init_process_group(
        "gloo", init_method=f"file://{out_dir}/rendezvous", rank=rank, world_size=world_size, timeout=_PG_TIMEOUT
    )


def _finish(rank, out_dir, result):
    # Written before teardown: the verdict must not depend on how gloo shuts down.
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as handle:
        json.dump(result, handle)
    dist.barrier()
    dist.destroy_process_group()


def _outcome(function, *args, **kwargs):
    """``None`` if ``function`` returns, else ``"TypeName: message"`` of what it raised."""
    try:
        function(*args, **kwargs)
    except Exception as error:  # reported to the test, which asserts on it
        return f"{type(error).__name__}: {error}"
    return None


def _embeddings(n):
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((5, 8)) * 3
    return (centers[np.arange(n) % 5] + rng.standard_normal((n, 8))).astype(np.float32)


def train(rank, world_size, out_dir, config):
    """Run a few epochs with update + scheduled refresh; write what this rank saw."""
    from batchsampler import SAMPLERS

    _init(rank, world_size, out_dir)
    try:
        n = config["n"]
        embeddings = _embeddings(n)
        sampler = SAMPLERS[config["sampler"]](n, config["batch_size"], **config["kwargs"])
        local, global_batches, versions = [], [], []
        step = 0
        for _ in range(config["epochs"]):
            epoch_local = []
            for batch in sampler:
                epoch_local.append(batch)
                sampler.update(batch, embeddings[batch] + 0.01 * step)  # a collective
                step += 1
            local.append(epoch_local)
            global_batches.append(sampler._history)
            versions.append(getattr(sampler, "graph_version", 0))
        graph = getattr(sampler, "graph", None)
        digest = None if graph is None else hashlib.sha1(graph.indices.tobytes()).hexdigest()
        bank_digest = hashlib.sha1(sampler.bank.embeddings.tobytes()).hexdigest()
        sharded_equal = None
        if graph is not None:
            # A build sharded over ranks equals a single build of the same seed.
            seed, seen = np.random.SeedSequence([7, 7]), sampler.bank.seen
            sharded = sampler._build_graph(sampler.bank.embeddings, seen, seed, sharded=True)
            single = sampler._build_graph(sampler.bank.embeddings, seen, seed, sharded=False)
            sharded_equal = bool(np.array_equal(sharded.indices, single.indices))
        # An encoding pass sharded over ranks fills every rank's bank with the full dataset.
        sampler.refresh_from(lambda batch: batch.numpy() * 3.0, torch.from_numpy(embeddings), batch_size=16)
        encoded_ok = bool(np.array_equal(sampler.bank.embeddings, embeddings * 3.0))
        result = {"len": len(sampler), "local": local, "global": global_batches, "versions": versions,
                  "graph": digest, "bank": bank_digest, "encoded_ok": encoded_ok, "sharded_equal": sharded_equal}
    except Exception as error:  # reported to the test, which asserts on it
        result = {"error": f"{type(error).__name__}: {error}"}
    _finish(rank, out_dir, result)


def mismatched_seed(rank, world_size, out_dir):
    from batchsampler import BatchSampler

    _init(rank, world_size, out_dir)
    try:
        BatchSampler(100, 4, k=5, m=20, seed=rank)
        message = None
    except ValueError as error:
        message = str(error)
    try:
        sampler = BatchSampler(100, 4, k=5, m=20, seed=0)
        sampler.update([rank], np.ones((1, 3)) if rank == 0 else np.full((1, 3), np.nan))
        update_message = None
    except ValueError as error:
        update_message = str(error)
    _finish(rank, out_dir, {"seed": message, "update": update_message})


def context_checks(rank, world_size, out_dir):
    """DistributedContext on its own: every mismatch raises on every rank and nothing hangs."""
    from batchsampler.distributed import DistributedContext

    _init(rank, world_size, out_dir)
    ctx = DistributedContext.detect(True)
    other = rank != 0
    out = {}
    # Equal values of every kind, including integers beyond int64 and dicts in another order.
    params = {"ef": 2, "M": np.int64(8)} if other else {"M": 8, "ef": 2}
    out["equal"] = _outcome(
        ctx.check_identical, seed=2**70, k=5, restart_prob=0.3, index_params=params, schedule="callable",
        bank_dtype="float32", refresh_every=None, drop_last=False, sizes=(1, 2), restart_one=1.0 if other else 1,
    )
    out["k"] = _outcome(ctx.check_identical, seed=0, k=20 if other else 10, m=30)
    out["seed"] = _outcome(ctx.check_identical, seed=2**63 + rank, k=5)
    out["float"] = _outcome(ctx.check_identical, restart_prob=0.2 if other else 0.25)
    out["str"] = _outcome(ctx.check_identical, backend="faiss" if other else "random")
    out["dict"] = _outcome(ctx.check_identical, index_params={"M": 16 if other else 8})
    out["none"] = _outcome(ctx.check_identical, refresh_every=None if other else 4)
    out["bool"] = _outcome(ctx.check_identical, drop_last=bool(other))
    out["missing"] = _outcome(ctx.check_identical, **({"seed": 0} if other else {"seed": 0, "m": 3}))
    out["update_calls"] = _outcome(ctx.gather_update, [rank], np.ones((1, 3)), call_index=4 if other else 5)
    # Rank 0 calls update twice, rank 1 once and then reaches a blocking refresh.
    out["update_first"] = _outcome(ctx.gather_update, [rank], np.ones((1, 3)), call_index=0)
    if other:
        out["update_vs_refresh"] = _outcome(ctx.check_in_step, "update", 1)
    else:
        out["update_vs_refresh"] = _outcome(ctx.gather_update, [rank], np.ones((1, 3)), call_index=1)
    out["check_counts"] = _outcome(ctx.check_in_step, "update", 2 if other else 3)
    out["check_equal"] = _outcome(ctx.check_in_step, "update", 7)
    if other:
        out["construct_vs_update"] = _outcome(ctx.gather_update, [rank], np.ones((1, 3)), call_index=0)
    else:
        out["construct_vs_update"] = _outcome(ctx.check_identical, k=5)
    out["rows_layout"] = _outcome(ctx.all_gather_rows, np.zeros((2, 4 if other else 3), dtype=np.float32))
    out["dims"] = _outcome(ctx.gather_update, [rank], np.ones((1, 4 if other else 3)), call_index=0)
    out["nan"] = _outcome(ctx.gather_update, [rank], np.full((1, 3), np.nan if other else 1.0), call_index=0)
    # Still in step after all of the above: a normal update goes through, float64 kept intact.
    rows, values = ctx.gather_update([rank], np.full((1, 2), 1e300) if other else np.ones((1, 2), np.float32), 9)
    out["after"] = {"rows": rows.tolist(), "values": values.tolist(), "dtype": str(values.dtype)}
    _finish(rank, out_dir, out)


def sampler_mismatches(rank, world_size, out_dir, cases):
    """Construct samplers whose arguments differ between ranks; every rank must raise."""
    from batchsampler import SAMPLERS

    _init(rank, world_size, out_dir)
    out = {}
    for name, sampler, common, per_rank in cases:
        kwargs = {**common, **per_rank[rank]}
        out[name] = _outcome(SAMPLERS[sampler], 120, 4, **kwargs)
    # The ranks are still in step: a matching sampler is built and updated on every rank.
    ok = SAMPLERS["batchsampler"](120, 4, k=5, m=20, seed=1)
    ok.update([rank], np.ones((1, 3)))
    out["after"] = int(ok.bank.num_seen)
    _finish(rank, out_dir, out)


def _run_epochs(sampler, epochs, embeddings):
    stream, step = [], 0
    for _ in range(epochs):
        local = []
        for batch in sampler:
            local.append(batch)
            sampler.update(batch, embeddings[batch] + 0.01 * step)
            step += 1
        stream.append([list(b) for b in sampler._history])
    return stream


def big_seed(rank, world_size, out_dir, seed):
    """The same seed beyond int64 distributed and on one process gives the same global stream."""
    from batchsampler import BatchSampler

    _init(rank, world_size, out_dir)
    n, batch_size, epochs = 90, 5, 3
    kwargs = dict(k=4, m=20, seed=seed, refresh_every=5, warmup_epochs=1, background=False)
    embeddings = _embeddings(n)
    try:
        distributed = _run_epochs(BatchSampler(n, batch_size, **kwargs), epochs, embeddings)
        single = _run_epochs(
            BatchSampler(n, batch_size * world_size, distributed=False, **kwargs), epochs, embeddings
        )
        result = {"distributed": distributed, "single": single}
    except Exception as error:
        result = {"error": f"{type(error).__name__}: {error}"}
    _finish(rank, out_dir, result)


def update_out_of_step(rank, world_size, out_dir):
    """Rank 0 calls update twice, rank 1 once and then refresh(blocking=True)."""
    from batchsampler import BatchSampler

    _init(rank, world_size, out_dir)
    n = 60
    embeddings = _embeddings(n)
    sampler = BatchSampler(n, 10, k=5, m=20, seed=3)
    batch = next(iter(sampler))
    sampler.update(batch, embeddings[batch])  # in step: 20 rows seen on every rank, more than k
    if rank == 0:
        message = _outcome(sampler.update, batch, embeddings[batch])
    else:
        message = _outcome(sampler.refresh, blocking=True)
    _finish(rank, out_dir, {"error": message})
