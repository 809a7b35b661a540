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


# ---------------------------------------------------------------------- background builds (test_distributed_build.py)


def _count_shards(calls):
    """Wrap the build_rows of sharded background builds; record the shard and rows of every call."""
    from batchsampler import graph_sampler

    original = graph_sampler.build_rows

    def counting(*args, **kwargs):
        built = original(*args, **kwargs)
        rows = np.arange(built.neighbors.shape[0]) if built.rows is None else built.rows
        calls.append({"shard": list(kwargs["shard"]), "rows": rows.tolist()})
        return built

    graph_sampler.build_rows = counting
    return original


def _fake_nodes(rank, nodes):
    """Make this rank believe it is on node ``nodes[rank]`` (ranks on "other nodes" exchange rows over gloo)."""
    if nodes is None:
        return
    from batchsampler import _shared

    _shared.node_key = lambda: f"test-node-{nodes[rank]}"


def _shm_maps():
    """``{path: inode}`` of the shared graph tables this process maps (from /proc/self/maps)."""
    found = {}
    with open("/proc/self/maps") as handle:
        for line in handle:
            parts = line.split()
            if len(parts) >= 6 and "/dev/shm/batchsampler-" in parts[5]:
                found[parts[5]] = int(parts[4])
    return found


def _digest(graph):
    return None if graph is None else hashlib.sha1(graph.indices.tobytes() + graph.scores.tobytes()).hexdigest()


def background_stream(rank, world_size, out_dir, config):
    """Train with scheduled background builds, distributed and on one process; record streams and swaps."""
    from batchsampler import BatchSampler

    _init(rank, world_size, out_dir)
    calls = []
    try:
        _fake_nodes(rank, config.get("nodes"))
        n, batch_size, epochs = config["n"], config["batch_size"], config["epochs"]
        embeddings = _embeddings(n)
        kwargs = config["kwargs"]

        def run(sampler):
            stream, versions, step = [], [], 0
            for _ in range(epochs):
                for batch in sampler:
                    versions.append(sampler.graph_version)
                    sampler.update(batch, embeddings[batch] + 0.01 * step)
                    step += 1
                stream.append([list(b) for b in sampler._history])
            return stream, versions

        _count_shards(calls)
        distributed_sampler = BatchSampler(n, batch_size, **kwargs)
        stream, versions = run(distributed_sampler)
        if distributed_sampler._pending is not None:  # the build requested last, not swapped in: let it finish
            distributed_sampler._pending.future.result(timeout=60)
        distributed_calls, calls[:] = list(calls), []
        single_sampler = BatchSampler(n, batch_size * world_size, distributed=False, **kwargs)
        single_stream, single_versions = run(single_sampler)
        result = {
            "stream": stream, "versions": versions, "single_stream": single_stream, "single_versions": single_versions,
            "graph": _digest(distributed_sampler.graph), "single_graph": _digest(single_sampler.graph),
            "builds": distributed_sampler.refresh_stats.builds, "requested": distributed_sampler._builds_requested,
            "calls": distributed_calls,
            "single_calls": [c["shard"] for c in calls],
        }
        distributed_sampler.close()
        single_sampler.close()
    except Exception as error:  # reported to the test, which asserts on it
        result = {"error": f"{type(error).__name__}: {error}"}
    _finish(rank, out_dir, result)


def _filled_sampler(rank, world_size, n, embeddings, share, **kwargs):
    """A BatchSampler whose bank holds the first ``share`` of the rows (every rank updates a slice)."""
    from batchsampler import BatchSampler

    sampler = BatchSampler(n, 4, swap_delay=2, **kwargs)
    rows = np.arange(int(n * share))
    local = rows[rank::world_size][: len(rows) // world_size]  # equal counts on every rank
    sampler.update(local, embeddings[local])
    return sampler


def _background_graph(sampler):
    """Request a background build, wait for it and swap it in; the pending build's record."""
    assert sampler.refresh(blocking=False) is True
    pending = sampler._pending
    pending.get()
    sampler._swap_pending(force=True)
    return pending


def background_checks(rank, world_size, out_dir):
    """Background builds against single builds (every backend), shared tables, copies, failures."""
    import copy
    import gc
    import mmap
    import pickle

    from batchsampler import ProximityGraph
    from batchsampler.base import GRAPH_STREAM

    _init(rank, world_size, out_dir)
    out = {"backends": {}}
    n, seed = 400, 13
    embeddings = _embeddings(n)
    try:
        calls = []
        _count_shards(calls)
        for backend, share in (("random", 1.0), ("random", 0.8), ("exact", 1.0), ("hnsw", 1.0), ("ivf", 1.0)):
            sampler = _filled_sampler(
                rank, world_size, n, embeddings, share, k=6, m=40, seed=seed, backend=backend, num_threads=1
            )
            calls.clear()
            pending = _background_graph(sampler)
            snapshot_seed = np.random.SeedSequence([seed, GRAPH_STREAM, 0])
            seen = sampler.bank.seen
            single = ProximityGraph.build(
                sampler.bank.embeddings, 6, 40, seed=snapshot_seed, mask=None if seen.all() else seen,
                backend=backend, num_threads=1,
            )
            graph = sampler.graph
            out["backends"][f"{backend}-{share}"] = {
                "digest": _digest(graph),
                "indices_equal": bool(np.array_equal(graph.indices, single.indices)),
                "scores_equal": bool(np.array_equal(graph.scores, single.scores, equal_nan=True)),
                "rows_equal": float(np.mean(np.all(graph.neighbors == single.neighbors, axis=1))),
                "calls": calls[:],
                "pending_rows": pending.rows,
            }
            sampler.close()
        # Shared memory: one table on the node, its name gone once mapped, freed with the graph.
        sampler = _filled_sampler(rank, world_size, n, embeddings, 1.0, k=6, m=40, seed=seed)
        first = _background_graph(sampler)
        maps = _shm_maps()
        out["shared"] = first.shared
        out["shared_inode"] = maps.get(first.shared)
        dist.barrier()  # the creator unlinks the name as its own build returns, so after its get()
        out["shared_exists_after_build"] = first.shared is not None and os.path.exists(first.shared)
        def in_mmap(array):
            while isinstance(array, np.ndarray):
                array = array.base
            return isinstance(array, memoryview) and isinstance(array.obj, mmap.mmap)

        out["graph_in_mmap"] = in_mmap(sampler.graph.indices) and in_mmap(sampler.graph.scores)
        # Copies are private: pickle and deepcopy give arrays of their own, equal to the shared ones.
        state = sampler.__getstate__()
        out["state_group"] = state["_build_group"] is None and sampler._build_group is not None
        for name, copied in (("pickle", pickle.loads(pickle.dumps(sampler.graph))),
                             ("deepcopy", copy.deepcopy(sampler.graph))):
            out[f"{name}_private"] = bool(
                not in_mmap(copied.indices) and not in_mmap(copied.scores)
                and np.array_equal(copied.indices, sampler.graph.indices)
                and np.array_equal(copied.scores, sampler.graph.scores)
            )
        # A new graph replaces the old one: the old table is unmapped once nothing refers to it
        # (here: the sampler, the state and the finished pending build held it).
        first_name = first.shared
        del state, first, copied
        second = _background_graph(sampler)
        second_name = second.shared
        del second
        gc.collect()
        maps = _shm_maps()
        out["second_shared"] = second_name
        # The old table stays mapped as the build group's spare (the next build reuses it) until
        # the group releases its pool; then it is unmapped, as nothing else refers to it.
        out["old_still_mapped"] = first_name in maps
        out["new_mapped"] = second_name in maps
        sampler._build_group.release()
        gc.collect()
        maps = _shm_maps()
        out["old_mapped_after_release"] = first_name in maps
        out["new_mapped_after_release"] = second_name in maps
        sampler.close()
        out["exists_after_close"] = any(os.path.exists(p) for p in (first_name, second_name))
        # Disabled shared memory: private tables, the same graph.
        os.environ["BATCHSAMPLER_SHARED_MEMORY"] = "0"
        private = _filled_sampler(rank, world_size, n, embeddings, 1.0, k=6, m=40, seed=seed)
        pending = _background_graph(private)
        out["private_shared"] = pending.shared
        out["private_equal"] = _digest(private.graph) == out["backends"]["random-1.0"]["digest"]
        del os.environ["BATCHSAMPLER_SHARED_MEMORY"]
        private.close()
        # No room in /dev/shm for rank 1's slice (ENOSPC): the node falls back to private tables.
        import errno

        from batchsampler import _shared

        reserve = _shared.SharedTable.reserve
        if rank == 1:
            def no_space(self, part, parts):
                raise OSError(errno.ENOSPC, "No space left on device")

            _shared.SharedTable.reserve = no_space
        full = _filled_sampler(rank, world_size, n, embeddings, 1.0, k=6, m=40, seed=seed)
        pending = _background_graph(full)
        _shared.SharedTable.reserve = reserve
        out["nospace_shared"] = pending.shared
        out["nospace_equal"] = _digest(full.graph) == out["backends"]["random-1.0"]["digest"]
        full.close()
    except Exception as error:  # reported to the test, which asserts on it
        import traceback

        out["error"] = f"{type(error).__name__}: {error}\n{traceback.format_exc()}"
    _finish(rank, out_dir, out)


def background_failures(rank, world_size, out_dir):
    """A build that fails on rank 1 raises on every rank at the swap; builds out of step raise too."""
    from batchsampler import graph_sampler

    _init(rank, world_size, out_dir)
    out = {}
    n = 200
    embeddings = _embeddings(n)
    try:
        sampler = _filled_sampler(rank, world_size, n, embeddings, 1.0, k=5, m=30, seed=3)
        original = graph_sampler.build_rows
        if rank == 1:
            def failing(*args, **kwargs):
                raise ValueError("no memory left on rank 1")

            graph_sampler.build_rows = failing
        assert sampler.refresh(blocking=False) is True
        swap_at = sampler._pending.swap_at
        produced, message = 0, None
        try:
            for _ in sampler:
                produced += 1
        except RuntimeError as error:
            message = str(error)
        graph_sampler.build_rows = original
        out["failure"] = message
        out["failed_at"] = [produced, swap_at]
        # Still in step afterwards: the next build works everywhere.
        pending = _background_graph(sampler)
        out["after"] = _digest(sampler.graph)
        out["after_rows"] = pending.rows
        # BATCHSAMPLER_BUILD_GROUP=0: no build group, every rank builds whole graphs (as before).
        os.environ["BATCHSAMPLER_BUILD_GROUP"] = "0"
        calls = []
        _count_shards(calls)
        whole = _filled_sampler(rank, world_size, n, embeddings, 1.0, k=5, m=30, seed=3)
        del os.environ["BATCHSAMPLER_BUILD_GROUP"]
        _background_graph(whole)
        out["no_group"] = [whole._build_group is None, len(calls), _digest(whole.graph)]
        graph_sampler.build_rows = original
        whole.close()
        # Ranks that request different builds (here: different build counters) raise, never hang.
        if rank == 0:
            sampler._builds_requested += 1
        try:
            _background_graph(sampler)
            out["out_of_step"] = None
        except RuntimeError as error:
            out["out_of_step"] = str(error)
        sampler.close()
    except Exception as error:  # reported to the test, which asserts on it
        import traceback

        out["error"] = f"{type(error).__name__}: {error}\n{traceback.format_exc()}"
    _finish(rank, out_dir, out)


def _single_digest(sampler, seed, build, **kwargs):
    """The digest of ProximityGraph.build on one process for background build ``build`` of ``sampler``."""
    from batchsampler import ProximityGraph
    from batchsampler.base import GRAPH_STREAM

    seen = sampler.bank.seen
    graph = ProximityGraph.build(
        sampler.bank.embeddings, sampler.k, sampler.m, seed=np.random.SeedSequence([seed, GRAPH_STREAM, build]),
        mask=None if seen.all() else seen, num_threads=1, **kwargs,
    )
    return _digest(graph)


def background_reuse(rank, world_size, out_dir):
    """Tables reused across background builds: the same graphs, a graph in use never written to."""
    import gc

    _init(rank, world_size, out_dir)
    out = {}
    n, seed = 300, 5
    embeddings = _embeddings(n)
    try:
        sampler = _filled_sampler(rank, world_size, n, embeddings, 1.0, k=6, m=40, seed=seed, num_threads=1)
        builds = []
        for build in range(4):  # alternates between two tables from the third build on
            pending = _background_graph(sampler)
            builds.append({
                "shared": pending.shared, "digest": _digest(sampler.graph),
                "single": _single_digest(sampler, seed, build),
            })
        out["builds"] = builds
        # A graph kept by the caller (here on rank 0 only) is not written to: the node reuses a
        # table only when it is free on every rank, so the next builds make new ones.
        held = sampler.graph if rank == 0 else None
        held_digest = _digest(sampler.graph)
        held_table = builds[-1]["shared"]
        after_hold = []
        for build in range(4, 7):
            pending = _background_graph(sampler)
            after_hold.append({
                "shared": pending.shared, "digest": _digest(sampler.graph),
                "single": _single_digest(sampler, seed, build),
            })
            gc.collect()
        out["after_hold"] = after_hold
        out["held_table"] = held_table
        out["held_unchanged"] = held is None or _digest(held) == held_digest
        del held
        # A fork (here on rank 1 only) retires every table mapped at that time: the child may
        # read them. The next build makes a new table although the spare is free.
        if rank == 1:
            child = os.fork()
            if child == 0:
                os._exit(0)
            os.waitpid(child, 0)
        before_fork = {b["shared"] for b in after_hold}
        pending = _background_graph(sampler)
        out["after_fork_new"] = pending.shared not in before_fork
        out["after_fork_equal"] = _digest(sampler.graph) == _single_digest(sampler, seed, 7)
        pending = _background_graph(sampler)  # a fresh pair again: the one before is free once more
        out["after_fork_second"] = pending.shared
        pending = _background_graph(sampler)
        out["after_fork_third"] = pending.shared
        out["after_fork_third_equal"] = _digest(sampler.graph) == _single_digest(sampler, seed, 9)
        sampler._build_group.release()
        sampler.close()
        del sampler, pending
        gc.collect()
        # BATCHSAMPLER_TABLE_REUSE=0: a new table at every build, the old one unmapped with its graph.
        os.environ["BATCHSAMPLER_TABLE_REUSE"] = "0"
        fresh = _filled_sampler(rank, world_size, n, embeddings, 1.0, k=6, m=40, seed=seed, num_threads=1)
        del os.environ["BATCHSAMPLER_TABLE_REUSE"]
        out["no_reuse"] = []
        for build in range(3):
            pending = _background_graph(fresh)
            path = pending.shared
            del pending
            gc.collect()
            out["no_reuse"].append([path, _digest(fresh.graph) == builds[build]["digest"], sorted(_shm_maps())])
        fresh.close()
        # BATCHSAMPLER_SHARED_MEMORY=0: private tables at every build, the same graphs.
        os.environ["BATCHSAMPLER_SHARED_MEMORY"] = "0"
        private = _filled_sampler(rank, world_size, n, embeddings, 1.0, k=6, m=40, seed=seed, num_threads=1)
        out["private"] = []
        for build in range(3):
            pending = _background_graph(private)
            out["private"].append([pending.shared, _digest(private.graph) == builds[build]["digest"]])
        del os.environ["BATCHSAMPLER_SHARED_MEMORY"]
        private.close()
    except Exception as error:  # reported to the test, which asserts on it
        import traceback

        out["error"] = f"{type(error).__name__}: {error}\n{traceback.format_exc()}"
    _finish(rank, out_dir, out)


def build_into_table(rank, world_size, out_dir, config):
    """BuildGroup.output_table + build_rows(out=...) + gather_graph: rows written in place, tables reused."""
    import gc

    from batchsampler import ProximityGraph
    from batchsampler._build import build_rows

    _init(rank, world_size, out_dir)
    out = {"rank": rank, "builds": []}
    n, k, m = 350, 6, 40
    embeddings = _embeddings(n)
    try:
        _fake_nodes(rank, config.get("nodes"))
        if config.get("private"):
            os.environ["BATCHSAMPLER_SHARED_MEMORY"] = "0"
        from batchsampler.distributed import DistributedContext

        group = DistributedContext.detect(True).new_build_group()
        current = None
        for build, (backend, mask) in enumerate(
            [("random", None), ("random", None), ("random", "half"), ("exact", None), ("random", None)]
        ):
            keep = None if mask is None else np.arange(n) % 5 != 0
            seed = np.random.SeedSequence([11, build])
            kwargs = {
                "seed": seed, "mask": keep, "backend": backend, "block_size": None, "index_params": None,
                "num_threads": 1, "keep_scores": True, "show_progress": False,
            }
            table = group.output_table(build, n, k)
            built = build_rows(embeddings, k, m, shard=(rank, world_size), out=table, **kwargs)
            neighbors, scores, info = group.gather_graph(build, n, k, (built.rows, built.neighbors, built.scores))
            del built, table
            single = build_rows(embeddings, k, m, shard=(0, 1), **kwargs)
            rows = np.arange(n) if single.rows is None else single.rows
            expected_neighbors = np.empty((n, k), np.int32)
            expected_scores = np.empty((n, k), np.float32)
            expected_neighbors[rows], expected_scores[rows] = single.neighbors, single.scores
            out["builds"].append({
                "shared": info["shared"], "reused": info["reused"],
                "indices_equal": bool(np.array_equal(neighbors, expected_neighbors)),
                # exact kNN: sharded tiles may round scores in the last bit differently
                "scores_equal": bool(np.allclose(scores, expected_scores, rtol=1e-6, atol=1e-6, equal_nan=True)),
                "scores_identical": bool(np.array_equal(scores, expected_scores, equal_nan=True)),
            })
            current = ProximityGraph.from_neighbors(neighbors, scores)  # the previous graph is dropped
            del neighbors, scores
            gc.collect()
        current_digest = _digest(current)
        # A failed shard after output_table: every rank raises, the table goes back to the pool.
        table = group.output_table(5, n, k)
        error = ValueError("failed on rank 0") if rank == 0 else None
        try:
            group.gather_graph(5, n, k, None if error else (np.zeros(0, np.int64), table[0], table[1]), error)
            out["failure"] = None
        except RuntimeError as caught:
            out["failure"] = str(caught)
        del table
        gc.collect()
        table = group.output_table(6, n, k)
        built = build_rows(embeddings, k, m, shard=(rank, world_size), out=table, seed=1, mask=None, backend="random",
                           block_size=None, index_params=None, num_threads=1, keep_scores=True, show_progress=False)
        neighbors, _, info = group.gather_graph(6, n, k, (built.rows, built.neighbors, built.scores))
        single = build_rows(embeddings, k, m, shard=(0, 1), seed=1, mask=None, backend="random", block_size=None,
                            index_params=None, num_threads=1, keep_scores=True, show_progress=False)
        out["after_failure"] = {
            "reused": info["reused"], "equal": bool(np.array_equal(neighbors, single.neighbors)),
            "shared": info["shared"],
            "previous_intact": _digest(current) == current_digest,  # the graph in use was not written to
        }
        group.release()
    except Exception as error:  # reported to the test, which asserts on it
        import traceback

        out["error"] = f"{type(error).__name__}: {error}\n{traceback.format_exc()}"
    _finish(rank, out_dir, out)
