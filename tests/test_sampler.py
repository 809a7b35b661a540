import logging

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader, Dataset

from batchsampler import SAMPLERS, BatchSampler, KNNBatchSampler, UniformBatchSampler

ALL_SAMPLERS = list(SAMPLERS.values())


class IndexedDataset(Dataset):
    def __init__(self, data):
        self.data = torch.as_tensor(data, dtype=torch.float32)

    def __len__(self):
        return len(self.data)

    def __getitem__(self, index):
        return index, self.data[index]


@st.composite
def sampler_configs(draw):
    n = draw(st.integers(2, 60))
    k = draw(st.integers(1, n - 1))
    return dict(
        sampler_class=draw(st.sampled_from(ALL_SAMPLERS)),
        n=n,
        batch_size=draw(st.integers(1, n)),
        k=k,
        m=draw(st.integers(k, n + 5)),
        restart_prob=draw(st.sampled_from([0.0, 0.2, 0.7, 1.0])),
        drop_last=draw(st.booleans()),
        replacement=draw(st.booleans()),
        seed=draw(st.integers(0, 2**31)),
        data_seed=draw(st.integers(0, 1000)),
        with_embeddings=draw(st.booleans()),
    )


def _make(config, **overrides):
    config = {**config, **overrides}
    embeddings = None
    if config["with_embeddings"]:
        embeddings = np.random.default_rng(config["data_seed"]).standard_normal((config["n"], 4))
    return config["sampler_class"](
        config["n"], config["batch_size"], k=config["k"], m=config["m"],
        restart_prob=config["restart_prob"], drop_last=config["drop_last"],
        replacement=config["replacement"], seed=config["seed"], embeddings=embeddings,
        max_fruitless_steps=8,
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sampler_configs())
def test_epoch_properties(config):
    sampler = _make(config)
    n, b = config["n"], config["batch_size"]
    batches = list(sampler)
    assert len(batches) == len(sampler)
    assert len(sampler) == (n // b if config["drop_last"] else -(-n // b))
    for batch in batches:
        assert all(isinstance(i, int) and 0 <= i < n for i in batch)
        assert len(set(batch)) == len(batch)
    flat = [i for batch in batches for i in batch]
    if config["replacement"]:
        assert all(len(batch) == b for batch in batches)
    elif config["drop_last"]:
        assert all(len(batch) == b for batch in batches)
        assert len(set(flat)) == len(flat) == len(batches) * b
    else:
        assert sorted(flat) == list(range(n))
        assert all(len(batch) == b for batch in batches[:-1])
    # Determinism: an identical sampler gives identical epochs.
    again = _make(config)
    assert list(again) == batches
    assert list(again) == list(sampler)


@pytest.mark.parametrize("lockstep_batches", [1, 5, 16])
def test_lockstep_groups_partition_the_epoch_deterministically(lockstep_batches):
    # 150 batches: up to 16 walkers at once, groups ending inside and at the end of the epoch.
    n, b = 2990, 20
    embeddings = np.random.default_rng(1).standard_normal((n, 8)).astype(np.float32)

    def make():
        return BatchSampler(n, b, k=10, m=60, seed=5, embeddings=embeddings, lockstep_batches=lockstep_batches)

    sampler = make()
    batches = list(sampler)
    assert len(batches) == len(sampler) == 150
    assert sorted(i for batch in batches for i in batch) == list(range(n))
    assert all(len(batch) == b for batch in batches[:-1]) and len(batches[-1]) == 10
    assert list(make()) == batches
    if lockstep_batches > 1:
        assert sampler.walk_stats.steps > 0  # the walk ran (no silent fall-back to uniform)
        one_at_a_time = BatchSampler(n, b, k=10, m=60, seed=5, embeddings=embeddings, lockstep_batches=1)
        assert batches != list(one_at_a_time)


def test_lockstep_batches_are_as_local_as_one_walk_at_a_time():
    # Walkers in lock-step (16 here: 150 batches) compete for instances; their batches must stay
    # as pure as a single walker's. 6 separated clusters: uniform batches have a same-cluster
    # pair share of about 1/6.
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(6), 400)
    embeddings = (rng.standard_normal((6, 16))[labels] * 4 + rng.standard_normal((2400, 16))).astype(np.float32)
    shares = {}
    for lockstep in (1, 16):
        sampler = BatchSampler(2400, 16, k=10, m=100, seed=0, embeddings=embeddings, lockstep_batches=lockstep)
        shares[lockstep] = float(np.mean([np.mean(labels[batch][:, None] == labels[batch]) for batch in sampler]))
    assert shares[16] > 0.5
    assert abs(shares[16] - shares[1]) < 0.1


def test_different_epochs_differ_and_set_epoch_selects_one():
    for sampler_class in ALL_SAMPLERS:
        embeddings = np.random.default_rng(0).standard_normal((200, 8))
        sampler = sampler_class(200, 16, k=10, m=50, seed=3, embeddings=embeddings)
        assert sampler.epoch == 0
        first, second = list(sampler), list(sampler)
        assert sampler.epoch == 2
        assert first != second
        sampler.set_epoch(0)
        assert list(sampler) == first
        sampler.set_epoch(1)
        assert list(sampler) == second
        other_seed = sampler_class(200, 16, k=10, m=50, seed=4, embeddings=embeddings)
        assert list(other_seed) != first


def test_warm_up_is_uniform_until_refresh(clustered):
    embeddings, _ = clustered
    sampler = BatchSampler(len(embeddings), 32, k=5, m=20, seed=7)
    uniform = UniformBatchSampler(len(embeddings), 32, seed=7)
    assert sampler.graph is None
    assert list(sampler) == list(uniform)
    sampler.update(np.arange(len(embeddings)), embeddings)
    assert sampler.refresh() is sampler.graph is not None
    assert sampler.graph_version == 1
    assert list(sampler) != list(uniform)


def test_refresh_with_too_few_seen_rows_warns_and_keeps_warm_up(caplog):
    sampler = BatchSampler(100, 10, k=5, m=20)
    sampler.update([0, 1, 2], np.ones((3, 4)))
    with caplog.at_level(logging.WARNING, logger="batchsampler"):
        assert sampler.refresh() is None
    assert "refresh skipped" in caplog.text
    assert sampler.graph_version == 0


def test_partially_seen_bank_builds_a_graph_that_still_covers_everything(clustered):
    embeddings, _ = clustered
    sampler = BatchSampler(len(embeddings), 32, k=5, m=20, seed=0)
    seen = np.arange(0, len(embeddings), 2)
    sampler.update(seen, embeddings[seen])
    graph = sampler.refresh()
    assert np.isin(graph.neighbors[seen], seen).all()
    assert sorted(i for batch in sampler for i in batch) == list(range(len(embeddings)))


def test_batchsampler_batches_are_harder_than_uniform_and_purer_than_knn():
    # The claim of the demo, on the demo's data (scikit-learn digits).
    from batchsampler.cli.demo import compare_samplers, load_digits_embeddings

    embeddings, labels = load_digits_embeddings()
    rows = compare_samplers(embeddings, labels, batch_size=64, k=100, m=1000, restart_prob=0.2, seed=0)
    assert rows["batchsampler"]["mean_similarity"] > rows["uniform"]["mean_similarity"] + 0.05
    assert rows["batchsampler"]["same_label_share"] < rows["knn"]["same_label_share"] - 0.1
    assert rows["batchsampler"]["same_label_share"] > rows["uniform"]["same_label_share"]
    assert all(row["coverage"] == 1.0 and row["repeats"] == 0 for row in rows.values())


@pytest.mark.parametrize("sampler_class", ALL_SAMPLERS)
@pytest.mark.parametrize("num_workers", [0, 2])
def test_dataloader_training_loop(sampler_class, num_workers, clustered):
    embeddings, _ = clustered
    dataset = IndexedDataset(embeddings)
    sampler = sampler_class(dataset, batch_size=50, k=8, m=40, seed=0)
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers)
    assert len(loader) == len(sampler) == 5
    for epoch in range(2):
        seen = []
        for indices, x in loader:
            assert x.shape == (len(indices), 16)
            torch.testing.assert_close(x, dataset.data[indices])
            sampler.update(indices, x * 2)  # tensors are accepted as they come
            seen.extend(indices.tolist())
        assert sorted(seen) == list(range(len(dataset)))
        sampler.refresh()


def test_update_accepts_tensors_of_any_float_dtype():
    sampler = BatchSampler(20, 4, k=3, m=10)
    sampler.update(torch.arange(5), torch.ones(5, 3, dtype=torch.bfloat16))
    sampler.update(np.arange(5, 10), np.ones((5, 3), dtype=np.float64))
    sampler.update(torch.arange(10, 20), torch.ones(10, 3, dtype=torch.float16, requires_grad=True))
    assert sampler.bank.embeddings.dtype == np.float32 and sampler.bank.seen.all()


@pytest.mark.parametrize("sampler_class", ALL_SAMPLERS)
def test_degenerate_but_valid_input(sampler_class):
    n = 33
    for embeddings in (np.ones((n, 4)), np.repeat(np.eye(4)[:3], 11, axis=0), np.zeros((n, 4))):
        sampler = sampler_class(n, 32, k=4, m=10, seed=0, embeddings=embeddings)  # N barely above B
        batches = list(sampler)
        assert [len(b) for b in batches] == [32, 1]
        assert sorted(i for b in batches for i in b) == list(range(n))


BAD_ARGUMENTS = [
    (dict(batch_size=0), "batch_size"),
    (dict(batch_size=101), "batch_size"),
    (dict(k=0), "k"),
    (dict(k=100), "k"),
    (dict(k=10, m=9), "m"),
    (dict(restart_prob=-0.1), "restart_prob"),
    (dict(restart_prob=1.5), "restart_prob"),
    (dict(seed=-1), "seed"),
    (dict(lockstep_batches=0), "lockstep_batches"),
    (dict(embeddings=np.ones((99, 3))), "embeddings"),
    (dict(embeddings=np.ones(100)), "embeddings"),
    (dict(embeddings=np.full((100, 3), np.nan)), "embeddings"),
    (dict(embeddings=np.full((100, 3), np.inf)), "embeddings"),
]


@pytest.mark.parametrize("overrides, argument", BAD_ARGUMENTS)
def test_bad_arguments_raise_naming_the_argument(overrides, argument):
    kwargs = dict(batch_size=10, k=5, m=20, restart_prob=0.2, **{})
    kwargs.update(overrides)
    with pytest.raises(ValueError, match=rf"^{argument}\b"):
        BatchSampler(100, **kwargs)


@pytest.mark.parametrize("sampler_class", [KNNBatchSampler, UniformBatchSampler])
def test_baselines_validate_what_they_use(sampler_class):
    with pytest.raises(ValueError, match=r"^batch_size\b"):
        sampler_class(100, 0)
    with pytest.raises(ValueError, match=r"^embeddings\b"):
        sampler_class(100, 10, k=5, embeddings=np.ones((99, 3)))


def test_type_errors_name_the_argument():
    with pytest.raises(TypeError, match=r"^batch_size\b"):
        BatchSampler(100, 10.0)
    with pytest.raises(TypeError, match=r"^data\b"):
        BatchSampler(object(), 10)
    with pytest.raises(TypeError, match=r"^drop_last\b"):
        BatchSampler(100, 10, drop_last="yes")


@pytest.mark.parametrize("sampler_class", ALL_SAMPLERS)
def test_update_rejects_bad_input_before_storing(sampler_class):
    sampler = sampler_class(50, 10, k=5, m=20)
    with pytest.raises(ValueError, match=r"^indices\b"):
        sampler.update([0, 50], np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"^indices\b"):
        sampler.update([-1], np.ones((1, 3)))
    with pytest.raises(ValueError, match=r"^embeddings\b"):
        sampler.update([0, 1], np.ones((3, 3)))
    with pytest.raises(ValueError, match=r"^embeddings\b"):
        sampler.update([0, 1], np.array([[0.0, np.nan], [1.0, 1.0]]))
    sampler.update([0, 1], np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"^embeddings must have dimension 3"):
        sampler.update([2], np.ones((1, 4)))
    assert sampler.bank.num_seen == 2


def test_from_graph_walks_the_given_graph(clustered):
    embeddings, _ = clustered
    built = BatchSampler(len(embeddings), 20, k=6, m=30, seed=2, embeddings=embeddings)
    loaded = BatchSampler.from_graph(built.graph, 20, seed=2)
    assert (loaded.k, loaded.m) == (6, 30)
    assert list(loaded) == list(built)
    with pytest.raises(ValueError, match=r"^graph\b"):
        BatchSampler(10, 2, k=3, m=5).set_graph(built.graph)


@pytest.mark.parametrize("sampler_class, backend", [(BatchSampler, "hnsw"), (BatchSampler, "exact"), (KNNBatchSampler, "ivf")])
def test_backend_is_used_for_every_build(clustered, sampler_class, backend):
    embeddings, labels = clustered
    params = {"nlist": 6, "nprobe": 6} if backend == "ivf" else None
    sampler = sampler_class(len(labels), 16, k=8, m=50, seed=0, backend=backend, index_params=params, embeddings=embeddings)
    assert sampler.graph.build_params["backend"] == backend
    sampler.update(np.arange(len(labels)), embeddings[::-1].copy())
    sampler.refresh()
    assert sampler.graph.build_params["backend"] == backend
    # The rebuilt graph reflects the new embeddings: node i now sits in the cluster of N - 1 - i,
    # and a (near-)exact graph on separated clusters links it inside that cluster.
    moved = labels[::-1]
    assert np.mean(moved[sampler.graph.neighbors] == moved[:, None]) > 0.95
    assert sorted(i for batch in sampler for i in batch) == list(range(len(labels)))


def test_unknown_backend_raises_before_any_work():
    with pytest.raises(ValueError, match="^backend"):
        BatchSampler(100, 10, k=5, m=20, backend="annoy", embeddings=np.full((100, 3), np.nan))
    with pytest.raises(TypeError, match="^index_params"):
        KNNBatchSampler(100, 10, k=5, index_params=[("nlist", 4)])


def test_scaled_graph_size_is_the_papers_on_large_data_and_proportional_below():
    from batchsampler import scaled_graph_size

    assert scaled_graph_size(1_000_000) == (100, 1000)
    assert scaled_graph_size(2000) == (100, 1000)
    assert scaled_graph_size(188) == (18, 94)
    assert scaled_graph_size(5) == (1, 2)
    assert scaled_graph_size(188, k=50) == (50, 94) and scaled_graph_size(188, k=120) == (120, 120)
    assert scaled_graph_size(188, m=30) == (18, 30)
    with pytest.raises(ValueError, match="^num_instances"):
        scaled_graph_size(1)
