"""The device build (``ProximityGraph.build(..., device=...)``) and device banks.

On CPU torch tensors (``device="cpu"``) the torch path must give the NumPy path's graph: bit
for bit on integer-valued embeddings (every dot product is exact in float32, so the GEMM's
summation order cannot matter), and up to float rounding ties on Gaussian ones. The CUDA
tests at the end skip without a GPU.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

import batchsampler.bank as bank_module
from batchsampler import BatchSampler, EmbeddingBank, KNNBatchSampler, ProximityGraph
from batchsampler import _torch_build
from batchsampler.graph import build_neighbor_rows

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="no GPU")


def _integer_rows(n, d=8, seed=0):
    """float32 rows of integers in [-1000, 1000): exact dot products, no ties in practice."""
    return np.random.default_rng(seed).integers(-1000, 1000, size=(n, d)).astype(np.float32)


def _gaussian_rows(n, d=16, seed=0):
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


def _assert_same_graph(a: ProximityGraph, b: ProximityGraph, *, exact: bool):
    """``b`` is ``a``'s graph: identical (``exact``), or up to near-ties of float rounding."""
    n = a.num_nodes
    sa, sb = a.scores.reshape(n, -1), b.scores.reshape(n, -1)
    if exact:
        np.testing.assert_array_equal(a.neighbors, b.neighbors)
        np.testing.assert_array_equal(sa, sb)
        return
    np.testing.assert_allclose(sb, sa, atol=1e-5, equal_nan=True)
    differ = a.neighbors != b.neighbors
    # Where a neighbour differs, the two picks score the same up to rounding (a near-tie).
    assert (np.abs(sa - sb)[differ] <= 1e-5).all()
    assert differ.mean() < 0.01


def _assert_valid(graph: ProximityGraph, k: int):
    neighbors = graph.neighbors
    assert neighbors.dtype == np.int32 and neighbors.shape == (graph.num_nodes, k)
    assert not (neighbors == np.arange(graph.num_nodes)[:, None]).any(), "self loop"
    assert all(len(set(row)) == k for row in neighbors.tolist()), "duplicate neighbour"
    scores = graph.scores.reshape(graph.num_nodes, k)
    assert (np.diff(np.nan_to_num(scores, nan=0.0), axis=1) <= 1e-6).all(), "not sorted"


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean([len(set(x) & set(y)) / len(x) for x, y in zip(a.tolist(), b.tolist())]))


# ---------------------------------------------------------------------- same graph as NumPy


@pytest.mark.parametrize("backend,m", [("random", 60), ("random", 1999), ("exact", 60)])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("as_tensor", [False, True])
def test_torch_cpu_build_is_the_numpy_graph_bit_for_bit_on_integer_rows(backend, m, masked, as_tensor):
    x = _integer_rows(2000)
    mask = np.random.default_rng(1).random(2000) > 0.25 if masked else None
    expected = ProximityGraph.build(x, 8, m, seed=5, backend=backend, mask=mask)
    data = torch.from_numpy(x) if as_tensor else x
    got = ProximityGraph.build(data, 8, m, seed=5, backend=backend, mask=mask, device="cpu")
    assert got.build_params["device"] == "cpu" and got.build_params["precision"] == "float32"
    assert got.build_params["exact"] == expected.build_params["exact"]
    # The random backend computes the NumPy kernel's very float32 operations; the exact one
    # multiplies unit rows (inexact), so its scores agree to rounding.
    _assert_same_graph(expected, got, exact=backend == "random" and m < 1999)
    if backend == "random" and m < 1999:
        assert got.build_params["block_size"] == expected.build_params["block_size"]


@pytest.mark.parametrize("backend", ["random", "exact"])
@pytest.mark.parametrize("masked", [False, True])
def test_torch_cpu_build_matches_numpy_on_gaussian_rows(backend, masked):
    x = _gaussian_rows(1500, d=32, seed=2)
    mask = np.random.default_rng(3).random(1500) > 0.2 if masked else None
    expected = ProximityGraph.build(x, 10, 100, seed=1, backend=backend, mask=mask)
    got = ProximityGraph.build(torch.from_numpy(x), 10, 100, seed=1, backend=backend, mask=mask, device="cpu")
    _assert_same_graph(expected, got, exact=False)
    if masked:  # masked rows: the same random edges, NaN scores
        rows = np.flatnonzero(~mask)
        np.testing.assert_array_equal(got.neighbors[rows], expected.neighbors[rows])
        assert np.isnan(got.scores.reshape(1500, 10)[rows]).all()


@pytest.mark.parametrize("backend", ["random", "exact"])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("world", [2, 3])
def test_sharded_device_rows_are_the_numpy_shards(backend, masked, world):
    x = _integer_rows(3000, seed=4)
    mask = np.random.default_rng(5).random(3000) > 0.3 if masked else None
    union = np.full((3000, 6), -1, dtype=np.int64)
    for rank in range(world):
        want = build_neighbor_rows(x, 6, 50, seed=9, shard=(rank, world), backend=backend, mask=mask)
        got = build_neighbor_rows(
            torch.from_numpy(x), 6, 50, seed=9, shard=(rank, world), backend=backend, mask=mask, device="cpu"
        )
        np.testing.assert_array_equal(got[0], want[0])  # the same rows, in the same order
        assert got[1].dtype == np.int64 and got[2].dtype == np.float32
        np.testing.assert_array_equal(got[1], want[1])
        np.testing.assert_allclose(got[2], want[2], atol=1e-6, equal_nan=True)
        union[got[0]] = got[1]
    whole = ProximityGraph.build(x, 6, 50, seed=9, backend=backend, mask=mask, device="cpu")
    np.testing.assert_array_equal(union, whole.neighbors)


def test_input_dtypes_and_scales_take_the_numpy_path_s_values():
    x = _integer_rows(800, seed=6)
    expected = ProximityGraph.build(x, 5, 40, seed=2)
    for data in (x.astype(np.float64), torch.from_numpy(x).double(), x.astype(np.int64), torch.from_numpy(x).long()):
        _assert_same_graph(expected, ProximityGraph.build(data, 5, 40, seed=2, device="cpu"), exact=True)
    half = torch.from_numpy(x / 1000).half()  # widened to float32, as on the NumPy path (inexact products)
    _assert_same_graph(
        ProximityGraph.build(half, 5, 40, seed=2), ProximityGraph.build(half, 5, 40, seed=2, device="cpu"), exact=False
    )
    huge = x.astype(np.float64) * 1e30  # float32 products would overflow: unit rows first
    _assert_same_graph(
        ProximityGraph.build(huge, 5, 40, seed=2), ProximityGraph.build(huge, 5, 40, seed=2, device="cpu"), exact=False
    )


def test_zero_rows_warn_as_on_the_numpy_path(caplog):
    x = _integer_rows(400, seed=7)
    x[[3, 50, 77]] = 0
    with caplog.at_level(logging.WARNING, logger="batchsampler._build"):
        expected = ProximityGraph.build(x, 5, 40, seed=1)
        numpy_messages = [r.getMessage() for r in caplog.records]
        caplog.clear()
        got = ProximityGraph.build(x, 5, 40, seed=1, device="cpu")
        torch_messages = [r.getMessage() for r in caplog.records]
    assert numpy_messages == torch_messages and "3 of 400 embedding rows are all zero" in torch_messages[0]
    _assert_valid(got, 5)
    live = np.setdiff1d(np.arange(400), [3, 50, 77])  # zero rows have arbitrary (tied) neighbours
    np.testing.assert_array_equal(
        np.sort(got.neighbors[live], axis=1)[:, :1] >= 0, np.ones((live.size, 1), bool)
    )
    same = (got.neighbors[live] == expected.neighbors[live]).all(axis=1)
    assert same.mean() > 0.95  # rows that met a zero candidate may order its ties differently


def test_keep_scores_false_and_symmetrize():
    x = _integer_rows(500, seed=8)
    expected = ProximityGraph.build(x, 5, 40, seed=3, keep_scores=False, symmetrize=True)
    got = ProximityGraph.build(x, 5, 40, seed=3, keep_scores=False, symmetrize=True, device="cpu")
    assert got.scores is None
    np.testing.assert_array_equal(got.indptr, expected.indptr)
    np.testing.assert_array_equal(got.indices, expected.indices)


@pytest.mark.parametrize("backend", ["hnsw", "ivf"])
def test_faiss_backends_with_a_cpu_device_build_the_cpu_index(backend):
    x = _gaussian_rows(1200, seed=9)
    expected = ProximityGraph.build(x, 5, 5, seed=1, backend=backend, num_threads=1)
    got = ProximityGraph.build(torch.from_numpy(x), 5, 5, seed=1, backend=backend, num_threads=1, device="cpu")
    _assert_same_graph(expected, got, exact=False)


# ---------------------------------------------------------------------- low precision


@pytest.mark.parametrize("precision", ["bfloat16", "float16", torch.bfloat16])
@pytest.mark.parametrize("backend", ["random", "exact"])
def test_low_precision_gives_a_valid_graph_close_to_float32(precision, backend):
    x = _gaussian_rows(1500, d=32, seed=10)
    reference = ProximityGraph.build(x, 10, 100, seed=4, backend=backend)
    got = ProximityGraph.build(x, 10, 100, seed=4, backend=backend, device="cpu", precision=precision)
    _assert_valid(got, 10)
    assert got.build_params["precision"] == ("bfloat16" if precision is torch.bfloat16 else precision)
    assert _overlap(got.neighbors, reference.neighbors) > 0.97
    np.testing.assert_allclose(got.scores, reference.scores, atol=2e-2)


def test_low_precision_random_neighbours_come_from_the_same_candidates():
    # k == m: every candidate is a neighbour, whatever the precision.
    x = _gaussian_rows(600, seed=11)
    reference = ProximityGraph.build(x, 10, 10, seed=2)
    got = ProximityGraph.build(x, 10, 10, seed=2, device="cpu", precision="bfloat16")
    np.testing.assert_array_equal(np.sort(got.neighbors, axis=1), np.sort(reference.neighbors, axis=1))


# ---------------------------------------------------------------------- errors


def _error(call):
    try:
        call()
    except (TypeError, ValueError) as error:
        return type(error), str(error)
    return None


_BAD = {
    "k zero": dict(k=0),
    "k float": dict(k=2.5),
    "k bool": dict(k=True),
    "k too large": dict(k=300),
    "m below k": dict(k=10, m=5),
    "m float": dict(m=40.0),
    "block size": dict(block_size=0),
    "threads": dict(num_threads=0),
    "backend": dict(backend="annoy"),
    "shard": dict(shard=(2, 2)),
    "shard shape": dict(shard=3),
    "mask dtype": dict(mask=np.ones(300, dtype=np.int64)),
    "mask shape": dict(mask=np.ones(299, dtype=bool)),
    "mask keeps too few": dict(mask=np.arange(300) < 5),
    "index params": dict(backend="hnsw", index_params={"nope": 1}),
}


@pytest.mark.parametrize("case", sorted(_BAD))
@pytest.mark.parametrize("as_tensor", [False, True])
def test_bad_arguments_raise_the_numpy_path_s_errors(case, as_tensor):
    x = _gaussian_rows(300)
    data = torch.from_numpy(x) if as_tensor else x
    kwargs = {"k": 5, "m": 40, "seed": 0, **_BAD[case]}
    expected = _error(lambda: build_neighbor_rows(data, **kwargs))
    assert expected is not None
    assert _error(lambda: build_neighbor_rows(data, device="cpu", **kwargs)) == expected
    if "shard" not in kwargs:
        assert _error(lambda: ProximityGraph.build(data, device="cpu", **kwargs)) == expected


_BAD_EMBEDDINGS = {
    "1-D": lambda: np.ones(10, np.float32),
    "3-D": lambda: np.ones((4, 3, 2), np.float32),
    "no rows": lambda: np.ones((0, 4), np.float32),
    "no columns": lambda: np.ones((10, 0), np.float32),
    "nan": lambda: np.where(np.eye(20, 4) > 0, np.nan, 1.0).astype(np.float32),
    "inf": lambda: np.where(np.eye(20, 4) > 0, np.inf, 1.0).astype(np.float32),
    "bool": lambda: np.ones((20, 4), bool),
    "complex": lambda: np.ones((20, 4), np.complex64),
}


@pytest.mark.parametrize("case", sorted(_BAD_EMBEDDINGS))
@pytest.mark.parametrize("as_tensor", [False, True])
def test_bad_embeddings_raise_the_numpy_path_s_errors(case, as_tensor):
    x = _BAD_EMBEDDINGS[case]()
    data = torch.from_numpy(x) if as_tensor else x
    expected = _error(lambda: ProximityGraph.build(data, 2, 5))
    assert expected is not None
    assert _error(lambda: ProximityGraph.build(data, 2, 5, device="cpu")) == expected
    half = torch.from_numpy(x).half() if as_tensor and x.dtype == np.float32 else None
    if half is not None:  # widened first on both paths
        assert _error(lambda: ProximityGraph.build(half, 2, 5, device="cpu")) == _error(
            lambda: ProximityGraph.build(half, 2, 5)
        )


def test_bad_device_and_precision():
    x = _gaussian_rows(100)
    with pytest.raises(ValueError, match=r"^device must be"):
        ProximityGraph.build(x, 2, 5, device="tpu")
    with pytest.raises(ValueError, match=r"^device must be a CPU or CUDA device"):
        ProximityGraph.build(x, 2, 5, device="meta")
    with pytest.raises(TypeError, match=r"^device must be a str or a torch.device"):
        ProximityGraph.build(x, 2, 5, device=3.5)
    with pytest.raises(ValueError, match=r"^precision must be one of"):
        ProximityGraph.build(x, 2, 5, device="cpu", precision="int8")
    with pytest.raises(ValueError, match=r"^precision='float16' needs a torch device"):
        ProximityGraph.build(x, 2, 5, precision="float16")
    with pytest.raises(ValueError, match=r"index_params: unknown keys \['nope'\] for 'exact'"):
        ProximityGraph.build(x, 2, 5, device="cpu", backend="exact", index_params={"nope": 1})
    with pytest.raises(ValueError, match=r"faiss_gpu.*needs a CUDA device"):
        ProximityGraph.build(x, 2, 5, device="cpu", backend="exact", index_params={"faiss_gpu": True})
    with pytest.raises(ValueError, match=r"^device must be"):
        BatchSampler(100, 10, k=2, m=5, device="gpu0")


@pytest.mark.skipif(CUDA, reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_a_clear_error():
    with pytest.raises(ValueError, match=r"^device='cuda', but CUDA is not available"):
        ProximityGraph.build(_gaussian_rows(50), 2, 5, device="cuda")
    with pytest.raises(ValueError, match=r"^device='cuda:1', but CUDA is not available"):
        BatchSampler(100, 10, k=2, m=5, device="cuda:1")
    with pytest.raises(ValueError, match=r"CUDA is not available"):
        EmbeddingBank(10, device=torch.device("cuda"))


# ---------------------------------------------------------------------- device banks and samplers


@pytest.fixture
def tensor_bank(monkeypatch):
    """Device banks on the CPU: the bank stores a torch tensor and builds take the torch path.

    ``numpy()`` copies, as it does off the CPU (a CPU tensor's ``.numpy()`` would share the
    bank's memory and hide whether host code reads the rows as they are now)."""
    monkeypatch.setattr(bank_module, "_torch_storage", lambda device: True)
    numpy = EmbeddingBank.numpy
    monkeypatch.setattr(EmbeddingBank, "numpy", lambda self: None if (rows := numpy(self)) is None else rows.copy())


def test_cpu_device_keeps_the_numpy_bank_and_build():
    x = _gaussian_rows(300)
    plain = BatchSampler(300, 20, k=5, m=40, seed=1, embeddings=x)
    cpu = BatchSampler(300, 20, k=5, m=40, seed=1, embeddings=torch.from_numpy(x), device="cpu")
    assert isinstance(cpu.bank.embeddings, np.ndarray) and cpu.bank.build_device is None
    assert "device" not in cpu.graph.build_params
    np.testing.assert_array_equal(cpu.graph.neighbors, plain.graph.neighbors)
    assert list(cpu) == list(plain)


def test_device_bank_update_snapshot_numpy(tensor_bank):
    bank = EmbeddingBank(10, device="cpu")
    assert bank.on_device and bank.embeddings is None and bank.numpy() is None
    bank.update([1, 3], np.array([[1.0, 2.0], [3.0, 4.0]]))
    bank.update(torch.tensor([3, 3, 5]), torch.tensor([[5.0, 6.0], [7.0, 8.0], [9.0, 9.0]]))  # last wins
    assert isinstance(bank.embeddings, torch.Tensor) and bank.embeddings.dtype == torch.float32
    assert bank.dim == 2 and bank.num_seen == 3 and bank.updates == 2
    np.testing.assert_array_equal(bank.numpy()[[1, 3, 5]], [[1, 2], [7, 8], [9, 9]])
    assert bank.staleness()[[1, 3, 5]].tolist() == [1, 0, 0]
    rows, seen = bank.snapshot()
    bank.update([1], np.zeros((1, 2)))
    assert isinstance(rows, torch.Tensor) and rows[1].tolist() == [1.0, 2.0] and seen[1]
    with pytest.raises(ValueError, match=r"^embeddings must have dimension 2"):
        bank.update([0], np.ones((1, 3)))
    with pytest.raises(ValueError, match=r"^embeddings must have one row per index"):
        bank.update([0, 1], torch.ones((1, 2)))
    with pytest.raises(ValueError, match=r"^embeddings contains NaN"):
        bank.update([0], torch.tensor([[float("nan"), 1.0]]))
    with pytest.raises(TypeError, match=r"^embeddings must be a numeric array, got dtype bool"):
        bank.update([0], torch.ones((1, 2), dtype=torch.bool))
    assert bank.updates == 3


def test_device_bank_float16_range_error_is_the_numpy_bank_s(tensor_bank):
    messages = []
    for storage in (False, True):
        bank_module._torch_storage = (lambda device: True) if storage else (lambda device: False)
        bank = EmbeddingBank(4, dtype=np.float16, device="cpu")
        bank.update([0], np.ones((1, 2)))
        with pytest.raises(ValueError) as error:
            bank.update([1], torch.tensor([[1e6, 1.0]]))
        messages.append(str(error.value))
        assert bank.on_device == storage and bank.numpy().dtype == np.float16
    assert messages[0] == messages[1] and "float16" in messages[0]


def test_auto_device_follows_the_first_update():
    bank = EmbeddingBank(5)
    assert bank.device is None
    bank.update([0], torch.ones((1, 3)))  # a CPU tensor: the CPU, a NumPy bank
    assert bank.device == torch.device("cpu") and isinstance(bank.embeddings, np.ndarray)
    other = EmbeddingBank(5)
    other.update([0], np.ones((1, 3)))
    assert other.device == torch.device("cpu") and not other.on_device


def test_restored_rows_move_with_the_first_update(tensor_bank):
    source = EmbeddingBank(4, device="cpu")
    source.update([0, 2], np.ones((2, 3)))
    checked = source.check_restore(source.numpy(), source.seen, source.last_update, source.updates, "test")
    bank = EmbeddingBank(4)  # undecided: keeps the rows as NumPy until an update decides
    bank.restore(checked)
    assert bank.device is None and isinstance(bank.embeddings, np.ndarray)
    bank.update([1], torch.full((1, 3), 2.0))
    assert isinstance(bank.embeddings, torch.Tensor)
    np.testing.assert_array_equal(bank.numpy()[:3], [[1, 1, 1], [2, 2, 2], [1, 1, 1]])
    typed = EmbeddingBank(4)
    typed.restore(checked, device_type="cpu")
    assert typed.device == torch.device("cpu") and isinstance(typed.embeddings, torch.Tensor)


def _train(sampler, x, *, tensors: bool, epochs: int = 2):
    """Updates in chunks, a refresh, then ``epochs`` epochs with background refreshes."""
    n = x.shape[0]
    for start in range(0, n, 100):
        rows = np.arange(start, min(n, start + 100))
        sampler.update(torch.from_numpy(rows) if tensors else rows, torch.from_numpy(x[rows]) if tensors else x[rows])
    sampler.refresh()
    batches = []
    for _ in range(epochs):
        for batch in sampler:
            batches.append(batch)
            sampler.update(batch, torch.from_numpy(x[batch] * 1.5) if tensors else x[batch] * 1.5)
    return batches


@pytest.mark.parametrize("cls", [BatchSampler, KNNBatchSampler])
def test_sampler_on_a_device_bank_gives_the_numpy_batches(tensor_bank, cls):
    x = _integer_rows(700, seed=12)
    options = dict(k=5, m=50, seed=3, refresh_every=7, warmup_epochs=0, swap_delay=2)
    reference = cls(700, 32, **options)
    bank_module._torch_storage = lambda device: False
    expected = _train(reference, x, tensors=False)
    bank_module._torch_storage = lambda device: True
    sampler = cls(700, 32, device="cpu", **options)
    got = _train(sampler, x, tensors=True)
    assert isinstance(sampler.bank.embeddings, torch.Tensor) and sampler.bank.build_device == torch.device("cpu")
    assert sampler.graph.build_params["device"] == "cpu"
    assert sampler.refresh_stats.builds == reference.refresh_stats.builds > 2
    np.testing.assert_array_equal(sampler.graph.neighbors, reference.graph.neighbors)
    assert got == expected
    reference.close()
    sampler.close()


def _moved(x, batch, epoch: int):
    """``batch``'s rows as the ``epoch``-th update writes them: shifted along a fixed direction,
    which changes their cosines with one another (a rotation of the rows would not)."""
    shift = 0.4 * (epoch + 1) * np.abs(x).max() * np.linspace(-1, 1, x.shape[1], dtype=np.float32)
    return x[np.asarray(batch)] + shift


def _train_moving(sampler, x, *, tensors: bool, epochs: int = 2):
    """As :func:`_train`, but each update moves the rows (:func:`_moved`), so that the bank's
    cosines change within an epoch, as a projection bank's do in training."""
    as_input = (lambda a: torch.from_numpy(np.ascontiguousarray(a))) if tensors else (lambda a: a)
    for start in range(0, x.shape[0], 100):
        rows = np.arange(start, min(x.shape[0], start + 100))
        sampler.update(as_input(rows), as_input(x[rows]))
    sampler.refresh()
    batches = []
    for epoch in range(epochs):
        for batch in sampler:
            batches.append(batch)
            sampler.update(as_input(np.asarray(batch)), as_input(_moved(x, batch, epoch)))
    return batches


# Every option that reads the bank on the host while an epoch is walked.
_HOST_READS = [
    dict(target_hardness=0.5, candidate_walks=4),
    dict(target_hardness=0.5, replacement=True, candidate_walks=3),
    dict(reseed_candidates=4),
]


@pytest.mark.parametrize("options", _HOST_READS)
def test_hardness_target_and_reseeds_walk_the_numpy_batches_on_a_device_bank(tensor_bank, options):
    # Three groups of 16 batches an epoch, one graph an epoch: later groups are chosen on rows
    # written since the graph was built, which a device bank must read as a CPU bank does.
    x = _integer_rows(700, seed=12)
    options = dict(k=5, m=50, seed=3, warmup_epochs=0, swap_delay=2, **options)
    bank_module._torch_storage = lambda device: False
    reference = BatchSampler(700, 16, **options)
    expected = _train_moving(reference, x, tensors=False)
    expected_hardness = reference.measure_epoch_hardness()
    reference.close()
    bank_module._torch_storage = lambda device: True
    sampler = BatchSampler(700, 16, device="cpu", **options)
    got = _train_moving(sampler, x, tensors=True)
    assert isinstance(sampler.bank.embeddings, torch.Tensor)
    assert got == expected
    assert sampler.measure_epoch_hardness() == expected_hardness  # on the rows now, as on a CPU bank
    sampler.close()


def test_resumed_target_sampler_on_a_device_bank_walks_the_uninterrupted_epoch(tensor_bank, tmp_path):
    x = _integer_rows(700, seed=14) / 1000
    # Groups of 4 batches: every group after the checkpoint is chosen on rows written before it.
    options = dict(k=5, m=50, seed=5, warmup_epochs=0, swap_delay=2, target_hardness=0.5, candidate_walks=4,
                   lockstep_batches=4, device="cpu", bank_dtype=np.float16)

    def train(sampler, batches):
        for batch in batches:
            yield batch
            sampler.update(torch.tensor(batch), torch.from_numpy(_moved(x, batch, 1)))

    sampler = BatchSampler(700, 16, **options)
    _train_moving(sampler, x, tensors=True, epochs=1)
    iterator = iter(sampler)
    for _ in train(sampler, (next(iterator) for _ in range(22))):  # half a group in
        pass
    path = sampler.save(tmp_path / "ckpt")
    rest = list(train(sampler, iterator))
    restored = BatchSampler(700, 16, **options)
    restored.load(path)
    assert len(rest) == len(sampler) - 22
    assert list(train(restored, restored)) == rest
    sampler.close()
    restored.close()


def test_checkpoint_round_trip_with_a_device_bank(tensor_bank, tmp_path):
    x = _integer_rows(500, seed=13)
    options = dict(k=5, m=40, seed=4, refresh_every=5, warmup_epochs=0, swap_delay=2)
    sampler = BatchSampler(500, 25, device="cpu", bank_dtype=np.float16, **options)
    _train(sampler, x / 1000, tensors=True, epochs=1)
    iterator = iter(sampler)
    for _ in range(6):
        next(iterator)
    path = sampler.save(tmp_path / "ckpt")
    rest = list(iterator)
    import zipfile

    with zipfile.ZipFile(path) as archive:  # stored as a NumPy array
        assert "bank_embeddings.npy" in archive.namelist()
    for device in ("cpu", None):  # the sampler's device, or the saved one when undecided
        restored = BatchSampler(500, 25, device=device, bank_dtype=np.float16, **options)
        restored.load(path)
        assert isinstance(restored.bank.embeddings, torch.Tensor)
        assert restored.bank.embeddings.dtype == torch.float16
        np.testing.assert_array_equal(restored.bank.numpy(), np.load(path)["bank_embeddings"])
        assert list(restored) == rest
        restored.close()
    sampler.close()


def test_device_kind_is_a_rank_invariant():
    def kind(device):
        return BatchSampler(50, 5, k=2, m=5, device=device)._rank_invariants()["device"]

    assert kind(None) is None
    assert kind("cpu") == kind(torch.device("cpu")) == "cpu"


# ---------------------------------------------------------------------- CUDA


@needs_cuda
@pytest.mark.parametrize("backend,m", [("random", 60), ("exact", 60)])
@pytest.mark.parametrize("masked", [False, True])
def test_cuda_build_is_the_numpy_graph(backend, m, masked):
    x = _integer_rows(3000, seed=20)
    mask = np.random.default_rng(21).random(3000) > 0.25 if masked else None
    expected = ProximityGraph.build(x, 8, m, seed=5, backend=backend, mask=mask)
    on_gpu = torch.from_numpy(x).cuda()
    got = ProximityGraph.build(on_gpu, 8, m, seed=5, backend=backend, mask=mask, device="cuda")
    assert got.build_params["device"] == "cuda"
    previous = torch.backends.cuda.matmul.allow_tf32
    _assert_same_graph(expected, got, exact=backend == "random" and not previous)
    exact_torch = ProximityGraph.build(
        on_gpu, 8, m, seed=5, backend=backend, mask=mask, device="cuda", index_params={"faiss_gpu": False}
    ) if backend == "exact" else got
    _assert_same_graph(expected, exact_torch, exact=False)
    for rank in range(2):
        want = build_neighbor_rows(x, 8, m, seed=5, shard=(rank, 2), backend=backend, mask=mask)
        rows = build_neighbor_rows(on_gpu, 8, m, seed=5, shard=(rank, 2), backend=backend, mask=mask, device="cuda:0")
        np.testing.assert_array_equal(rows[0], want[0])
        assert (rows[1] == want[1]).mean() > 0.99


@needs_cuda
@pytest.mark.parametrize("precision", ["bfloat16", "float16"])
def test_cuda_low_precision_graph_is_valid(precision):
    x = _gaussian_rows(3000, d=64, seed=22)
    reference = ProximityGraph.build(x, 10, 100, seed=1)
    got = ProximityGraph.build(torch.from_numpy(x).cuda(), 10, 100, seed=1, device="cuda", precision=precision)
    _assert_valid(got, 10)
    assert _overlap(got.neighbors, reference.neighbors) > 0.97


@needs_cuda
@pytest.mark.parametrize("bank_dtype", [np.float32, np.float16])
def test_cuda_sampler_keeps_the_bank_on_the_gpu(bank_dtype, tmp_path):
    x = _integer_rows(800, seed=23) / 1000
    options = dict(k=5, m=50, seed=3, refresh_every=6, warmup_epochs=0, swap_delay=2, bank_dtype=bank_dtype)
    sampler = BatchSampler(800, 32, **options)  # device=None: the first update's tensors decide
    gpu = torch.from_numpy(x.astype(np.float32)).cuda()
    sampler.update(torch.arange(800), gpu)
    assert sampler.bank.on_device and sampler.bank.embeddings.is_cuda
    assert sampler.bank.embeddings.dtype == (torch.float16 if bank_dtype == np.float16 else torch.float32)
    sampler.refresh()
    assert sampler.graph.build_params["device"] == "cuda"
    assert isinstance(sampler.graph.neighbors, np.ndarray)
    for batch in sampler:
        sampler.update(torch.tensor(batch), gpu[batch] * 1.5)
    assert sampler.bank.embeddings.is_cuda and sampler.refresh_stats.builds > 1
    _assert_valid(sampler.graph, 5)
    path = sampler.save(tmp_path / "gpu")
    restored = BatchSampler(800, 32, **options)
    restored.load(path)
    assert restored.bank.embeddings.is_cuda
    torch.testing.assert_close(restored.bank.embeddings, sampler.bank.embeddings)
    sampler.close()


@needs_cuda
def test_cuda_devices_of_ranks_are_the_same_kind():
    assert (
        BatchSampler(50, 5, k=2, m=5, device="cuda:0")._rank_invariants()["device"]
        == BatchSampler(50, 5, k=2, m=5, device=f"cuda:{torch.cuda.device_count() - 1}")._rank_invariants()["device"]
        == "accelerator"
    )


@needs_cuda
@pytest.mark.skipif(_torch_build.faiss_gpu_count() == 0, reason="FAISS without GPU support")
def test_faiss_gpu_exact_is_the_exact_graph():
    x = _gaussian_rows(3000, d=32, seed=24)
    expected = ProximityGraph.build(x, 10, 10, seed=1, backend="exact")
    got = ProximityGraph.build(x, 10, 10, seed=1, backend="exact", device="cuda", index_params={"faiss_gpu": True})
    _assert_same_graph(expected, got, exact=False)
    ivf = ProximityGraph.build(x, 10, 10, seed=1, backend="ivf", device="cuda")
    _assert_valid(ivf, 10)
