"""Worker processes for tests/test_distributed.py (spawned by torch.multiprocessing)."""

import hashlib
import json
import os

import numpy as np
import torch
import torch.distributed as dist


def _embeddings(n):
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((5, 8)) * 3
    return (centers[np.arange(n) % 5] + rng.standard_normal((n, 8))).astype(np.float32)


def train(rank, world_size, out_dir, config):
    """Run a few epochs with update + scheduled refresh; write what this rank saw."""
    from batchsampler import SAMPLERS

    dist.init_process_group("gloo", init_method=f"file://{out_dir}/rendezvous", rank=rank, world_size=world_size)
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
    # Written before teardown: the verdict must not depend on how gloo shuts down.
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as handle:
        json.dump(result, handle)
    dist.barrier()
    dist.destroy_process_group()


def mismatched_seed(rank, world_size, out_dir):
    from batchsampler import BatchSampler

    dist.init_process_group("gloo", init_method=f"file://{out_dir}/rendezvous", rank=rank, world_size=world_size)
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
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as handle:
        json.dump({"seed": message, "update": update_message}, handle)
    dist.barrier()
    dist.destroy_process_group()
