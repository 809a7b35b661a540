"""Checkpoints survive crashes and never half-load; states and inputs are checked where they enter."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from batchsampler import SAMPLERS, BatchSampler, KNNBatchSampler, ProximityGraph, UniformBatchSampler

N, B = 120, 16


def _embeddings(n=N, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((6, 8))[np.arange(n) % 6] * 3 + rng.standard_normal((n, 8))).astype(np.float32)


def _mid_epoch(sampler, batches=3):
    iterator = iter(sampler)
    for _ in range(batches):
        next(iterator)
    return iterator


def _snapshot(sampler):
    """Everything load/load_state_dict may change, as comparable values."""
    graph = getattr(sampler, "graph", None)
    return {
        "state": sampler.state_dict(),
        "epoch": sampler.epoch,
        "bank": None if sampler.bank.embeddings is None else sampler.bank.embeddings.tobytes(),
        "seen": sampler.bank.seen.tobytes(),
        "clock": (sampler.bank.last_update.tobytes(), sampler.bank.updates),
        "graph": None if graph is None else (graph.indptr.tobytes(), graph.indices.tobytes()),
        "version": getattr(sampler, "graph_version", None),
        "restored": sampler._restored_history,
    }


# ---------------------------------------------------------------------- atomic writes


def test_a_failed_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.npz"
    sampler = BatchSampler(N, B, k=5, m=30, embeddings=_embeddings())
    sampler.save(path)
    before = path.read_bytes()

    def crash(handle, **arrays):
        handle.write(b"PK\x03\x04 partial")
        raise KeyboardInterrupt  # killed mid-write

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(KeyboardInterrupt):
        sampler.save(path)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["ckpt.npz"]  # no temporary file left behind


def test_a_killed_save_never_truncates_the_checkpoint(tmp_path):
    """A process killed while overwriting a large checkpoint leaves the old file readable."""
    path = tmp_path / "ckpt.npz"
    script = textwrap.dedent(f"""
        import numpy as np, sys
        from batchsampler import UniformBatchSampler
        sampler = UniformBatchSampler(200_000, 16, seed=0)
        sampler.update(np.arange(200_000), np.ones((200_000, 64), dtype=np.float32))
        sampler.save({str(path)!r})
        print("saved", flush=True)
        while True:
            sampler.save({str(path)!r})
    """)
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "saved"
        time.sleep(0.3)  # somewhere inside one of the overwrites
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    restored = UniformBatchSampler(200_000, 16, seed=0)
    restored.load(path)
    assert restored.bank.num_seen == 200_000


def test_graph_save_is_atomic_and_paths_resolve_alike(tmp_path, monkeypatch):
    graph = ProximityGraph.build(_embeddings(), k=5, m=30)
    assert graph.save(tmp_path / "g") == str(tmp_path / "g.npz")
    assert ProximityGraph.load(tmp_path / "g").num_nodes == N
    before = (tmp_path / "g.npz").read_bytes()
    monkeypatch.setattr(np, "savez", lambda handle, **arrays: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        graph.save(tmp_path / "g.npz")
    assert (tmp_path / "g.npz").read_bytes() == before


def test_save_and_load_resolve_a_path_without_suffix_alike(tmp_path):
    sampler = BatchSampler(N, B, k=5, m=30, embeddings=_embeddings())
    assert sampler.save(tmp_path / "ckpt") == str(tmp_path / "ckpt.npz")
    restored = BatchSampler(N, B, k=5, m=30)
    restored.load(tmp_path / "ckpt")
    assert list(restored) == list(sampler)


# ---------------------------------------------------------------------- validate, then apply


@pytest.mark.parametrize(
    "other",
    [dict(seed=5), dict(batch_size=8), dict(n=N + 6)],
    ids=["seed", "batch_size", "num_instances"],
)
def test_a_rejected_load_leaves_the_sampler_as_it_was(tmp_path, other):
    source = BatchSampler(other.get("n", N), other.get("batch_size", B), k=5, m=30, seed=other.get("seed", 0),
                          embeddings=_embeddings(other.get("n", N), seed=1))
    _mid_epoch(source)
    source.save(tmp_path / "other.npz")
    target = BatchSampler(N, B, k=5, m=30, seed=0, embeddings=_embeddings())
    _mid_epoch(target, 2)
    before = _snapshot(target)
    with pytest.raises(ValueError, match="seed|global_batch_size|num_instances|shape"):
        target.load(tmp_path / "other.npz")
    assert _snapshot(target) == before


def _crafted(tmp_path, sampler, **changes):
    """Save ``sampler``, then rewrite some arrays of the file; returns the path."""
    path = tmp_path / "crafted.npz"
    sampler.save(path)
    with np.load(path) as data:
        arrays = {name: data[name] for name in data.files}
    meta = json.loads(str(arrays.pop("meta")))
    for name, value in changes.items():
        if name == "meta":
            value(meta)
        else:
            arrays[name] = value
    np.savez(path, meta=np.array(json.dumps(meta)), **arrays)
    return path


@pytest.mark.parametrize("make", [
    lambda: BatchSampler(N, B, k=5, m=30, lockstep_batches=1, embeddings=_embeddings()),
    lambda: BatchSampler(N, B, k=5, m=30, embeddings=_embeddings()),
    lambda: KNNBatchSampler(N, B, k=5, embeddings=_embeddings()),
], ids=["batchsampler-lockstep1", "batchsampler", "knn"])
def test_a_history_that_lists_every_index_is_rejected(tmp_path, make):
    sampler = make()
    _mid_epoch(sampler, 1)
    every = np.arange(N, dtype=np.int64)
    path = _crafted(tmp_path, sampler, history_indices=every, history_offsets=np.array([0, N], dtype=np.int64),
                    grown_indices=np.zeros(0, np.int64), grown_offsets=np.array([0], np.int64),
                    meta=lambda meta: meta.update(grown_first=None))
    target = make()
    before = _snapshot(target)
    with pytest.raises(ValueError, match="batch 0 has 120 indices, expected 16"):
        target.load(path)
    assert _snapshot(target) == before


@pytest.mark.parametrize("indices, message", [
    (lambda h: np.where(np.arange(h.size) == 0, 10_000, h), r"outside \[0, 120\)"),
    (lambda h: np.where(np.arange(h.size) == 1, h[0], h), "repeats an index"),
    (lambda h: np.where(np.arange(h.size) == 20, h[0], h), "repeats an index"),
], ids=["out-of-range", "repeat-in-batch", "repeat-in-epoch"])
def test_corrupt_histories_are_rejected(tmp_path, indices, message):
    sampler = BatchSampler(N, B, k=5, m=30, lockstep_batches=1, embeddings=_embeddings())
    _mid_epoch(sampler, 3)
    with np.load(sampler.save(tmp_path / "ok.npz")) as data:
        history = data["history_indices"]
    path = _crafted(tmp_path, sampler, history_indices=indices(history))
    target = BatchSampler(N, B, k=5, m=30, lockstep_batches=1)
    before = _snapshot(target)
    with pytest.raises(ValueError, match=message):
        target.load(path)
    assert _snapshot(target) == before


def test_bad_files_give_one_clear_value_error(tmp_path):
    sampler = BatchSampler(N, B, k=5, m=30, embeddings=_embeddings())
    good = sampler.save(tmp_path / "good.npz")
    (tmp_path / "empty.npz").write_bytes(b"")
    (tmp_path / "truncated.npz").write_bytes(open(good, "rb").read()[:1000])
    (tmp_path / "text.npz").write_text("hello")
    sampler.graph.save(tmp_path / "graph.npz")
    damaged = bytearray(open(good, "rb").read())
    central = damaged.find(b"PK\x01\x02")  # first central-directory entry: compression method 99
    damaged[central + 10 : central + 12] = (99).to_bytes(2, "little")
    (tmp_path / "damaged.npz").write_bytes(bytes(damaged))  # zipfile raises NotImplementedError
    np.save(tmp_path / "array.npy", np.zeros(3))
    os.replace(tmp_path / "array.npy", tmp_path / "array.npz")
    target = BatchSampler(N, B, k=5, m=30)
    before = _snapshot(target)
    for name, message in [
        ("empty", "is empty"), ("truncated", "truncated"), ("text", "not a .npz"), ("damaged", "unreadable"),
        ("graph", "is a saved ProximityGraph, expected a BatchSampler checkpoint"), ("array", "single array"),
    ]:
        with pytest.raises(ValueError, match=message):
            target.load(tmp_path / f"{name}.npz")
    with pytest.raises(FileNotFoundError):
        target.load(tmp_path / "missing.npz")
    with pytest.raises(ValueError, match="is a sampler checkpoint"):
        ProximityGraph.load(good)
    assert _snapshot(target) == before


def test_a_failed_background_build_raises_the_same_error_at_save(tmp_path, monkeypatch):
    sampler = BatchSampler(N, B, k=5, m=30, embeddings=_embeddings(), swap_delay=100)

    def broken(*args, **kwargs):
        raise MemoryError("out of memory while building")

    monkeypatch.setattr(ProximityGraph, "build", broken)
    assert sampler.refresh(blocking=False) is True
    with pytest.raises(RuntimeError, match="background graph build failed: out of memory"):
        sampler.save(tmp_path / "ckpt.npz")
    assert not (tmp_path / "ckpt.npz").exists()


def test_background_requests_coalesce_and_say_so():
    sampler = BatchSampler(N, B, k=5, m=30, embeddings=_embeddings(), swap_delay=2)
    assert sampler.refresh(blocking=False) is True
    assert [sampler.refresh(blocking=False) for _ in range(5)] == [False] * 5
    assert sampler.refresh_stats.coalesced == 5
    list(sampler)
    assert sampler.refresh_stats.builds == 2  # the constructor's and the one queued request


# ---------------------------------------------------------------------- load_state_dict


@pytest.mark.parametrize("name", list(SAMPLERS))
@pytest.mark.parametrize("field, value", [
    ("produced_total", "x"), ("epoch", -1), ("position", 10_000), ("epoch", 1.5), ("epoch", None),
    ("epoch", "missing"), ("next_refresh_at", "soon"), ("graph_version", -2), ("seed", True),
])
def test_load_state_dict_checks_every_field_before_applying(name, field, value):
    sampler = SAMPLERS[name](N, B, k=5, m=30, embeddings=_embeddings())
    _mid_epoch(sampler, 2)
    state = sampler.state_dict()
    if field not in state:
        pytest.skip(f"{name} has no {field!r} field")
    target = SAMPLERS[name](N, B, k=5, m=30, embeddings=_embeddings())
    before = _snapshot(target)
    if value == "missing":
        del state[field]
    else:
        state[field] = value
    with pytest.raises(ValueError, match=field):
        target.load_state_dict(state)
    assert _snapshot(target) == before


def test_load_state_dict_rejects_a_non_dict():
    with pytest.raises(TypeError, match="must be a dict"):
        BatchSampler(N, B, k=5, m=30).load_state_dict(None)


# ---------------------------------------------------------------------- inputs


@pytest.mark.parametrize("dtype, value", [(np.float16, 70_000.0), (np.float32, 1e300)])
def test_update_rejects_values_the_bank_dtype_cannot_hold(dtype, value):
    sampler = BatchSampler(N, B, k=5, m=30, bank_dtype=dtype)
    sampler.update(np.arange(4), np.ones((4, 8)))
    before = sampler.bank.embeddings.copy()
    with pytest.raises(ValueError, match=f"range of the bank's dtype {np.dtype(dtype).name}"):
        sampler.update(np.arange(4), np.full((4, 8), value, dtype=np.float64))
    np.testing.assert_array_equal(sampler.bank.embeddings, before)
    assert sampler.bank.updates == 1


def test_numpy_scalars_in_metadata_round_trip(tmp_path):
    sampler = BatchSampler(N, B, k=np.int64(5), m=np.int64(30), seed=np.int64(0), backend="hnsw",
                           index_params={"M": np.int64(8), "ef_search": np.int32(16)}, embeddings=_embeddings())
    sampler.save(tmp_path / "ckpt.npz")
    restored = BatchSampler(N, B, k=5, m=30, seed=0, backend="hnsw", index_params={"M": 8, "ef_search": 16})
    restored.load(tmp_path / "ckpt.npz")
    assert list(restored) == list(sampler)
    graph = ProximityGraph.build(_embeddings(), k=np.int64(5), m=np.int64(30), seed=np.int64(3))
    graph.build_params["note"] = np.float32(0.5)
    graph.save(tmp_path / "g.npz")
    assert ProximityGraph.load(tmp_path / "g.npz").build_params["seed"] == 3


def test_flags_must_be_bools():
    with pytest.raises(TypeError, match="symmetrize must be a bool"):
        BatchSampler(N, B, symmetrize="no", k=5, m=30)
