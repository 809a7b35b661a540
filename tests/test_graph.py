import networkx as nx
import numpy as np
import pytest
import torch

from batchsampler import ProximityGraph, _knn
from batchsampler.graph import build_neighbor_rows, random_distinct_neighbors


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _brute_force_knn(x, k):
    sims = _unit(x) @ _unit(x).T
    np.fill_diagonal(sims, -np.inf)
    return np.argsort(-sims, axis=1)[:, :k]


def _assert_simple(graph):
    neighbors = graph.neighbors
    assert neighbors.dtype == np.int32
    assert not (neighbors == np.arange(graph.num_nodes)[:, None]).any(), "self loop"
    assert all(len(set(row)) == len(row) for row in neighbors.tolist()), "duplicate neighbour"


def test_exact_graph_matches_brute_force():
    x = np.random.default_rng(0).standard_normal((300, 8)).astype(np.float32)
    graph = ProximityGraph.build(x, k=7, m=300)
    assert graph.build_params["exact"]
    np.testing.assert_array_equal(graph.neighbors, _brute_force_knn(x, 7))
    _assert_simple(graph)


@pytest.mark.parametrize("m", [5, 40, 298])
def test_random_candidate_graph_is_simple_and_scored(m):
    x = np.random.default_rng(1).standard_normal((300, 8)).astype(np.float32)
    graph = ProximityGraph.build(x, k=5, m=m, seed=3)
    assert not graph.build_params["exact"]
    _assert_simple(graph)
    unit = _unit(x)
    expected = np.einsum("nd,nkd->nk", unit, unit[graph.neighbors])
    np.testing.assert_allclose(graph.scores.reshape(300, 5), expected, atol=1e-5)
    assert (np.diff(graph.scores.reshape(300, 5), axis=1) <= 1e-6).all(), "not sorted by similarity"


def test_k_equal_m_keeps_every_candidate():
    # With k == m all m candidates become neighbours: each node gets m distinct non-self ids,
    # and stratified draws offer every node to about m anchors.
    x = np.random.default_rng(2).standard_normal((500, 4)).astype(np.float32)
    graph = ProximityGraph.build(x, k=10, m=10, seed=0, block_size=4)
    _assert_simple(graph)
    in_degrees = graph.in_degrees()
    # ~2.75 passes x 4 anchors each; no node is left without in-edges.
    assert in_degrees.min() >= 2 and in_degrees.max() <= 15


def test_candidates_give_hard_but_not_nearest_neighbours(clustered):
    x, labels = clustered
    random_graph = ProximityGraph.build(x, k=5, m=10, seed=0)
    exact_graph = ProximityGraph.build(x, k=5, m=len(x))
    same_random = (labels[random_graph.neighbors] == labels[:, None]).mean()
    same_exact = (labels[exact_graph.neighbors] == labels[:, None]).mean()
    # One class is 1/6 of the data: ~1.7 of 10 candidates share it (rule of thumb min(k, p*m)).
    assert same_exact == 1.0
    assert 0.2 < same_random < 0.6


def test_build_is_deterministic_per_seed():
    x = np.random.default_rng(3).standard_normal((400, 8))
    a = ProximityGraph.build(x, k=4, m=30, seed=5)
    b = ProximityGraph.build(x, k=4, m=30, seed=5)
    c = ProximityGraph.build(x, k=4, m=30, seed=6)
    np.testing.assert_array_equal(a.neighbors, b.neighbors)
    assert (a.neighbors != c.neighbors).any()


def test_accepts_tensors_of_any_float_dtype():
    x = torch.randn(100, 8, generator=torch.Generator().manual_seed(0))
    reference = ProximityGraph.build(x.numpy(), k=3, m=20, seed=0)
    for dtype in (torch.float64, torch.float16, torch.bfloat16):
        graph = ProximityGraph.build(x.to(dtype), k=3, m=20, seed=0)
        assert graph.neighbors.shape == (100, 3)
    np.testing.assert_array_equal(ProximityGraph.build(x, k=3, m=20, seed=0).neighbors, reference.neighbors)


@pytest.mark.parametrize("m", [10, 100])
def test_degenerate_embeddings_still_give_simple_graphs(m):
    identical = np.ones((100, 4), dtype=np.float32)
    zeros = np.zeros((100, 4), dtype=np.float32)
    duplicated = np.repeat(np.random.default_rng(0).standard_normal((10, 4)), 10, axis=0)
    for x in (identical, zeros, duplicated):
        _assert_simple(ProximityGraph.build(x, k=5, m=m, seed=0))


def test_mask_keeps_unseen_rows_out_of_the_search(clustered):
    x, _ = clustered
    mask = np.ones(len(x), dtype=bool)
    mask[::7] = False
    x = x.copy()
    x[~mask] = 1e3  # garbage that would dominate cosine search if it were used
    graph = ProximityGraph.build(x, k=4, m=50, seed=0, mask=mask)
    _assert_simple(graph)
    valid_neighbors = graph.neighbors[mask]
    assert mask[valid_neighbors].all(), "a seen row points to an unseen one"
    assert np.isnan(graph.scores.reshape(-1, 4)[~mask]).all()
    assert not np.isnan(graph.scores.reshape(-1, 4)[mask]).any()


def test_symmetrize_adds_reverse_edges_without_duplicates():
    x = np.random.default_rng(4).standard_normal((80, 5))
    graph = ProximityGraph.build(x, k=3, m=20, seed=0)
    sym = graph.symmetrize()
    edges = set(zip(*graph.to_pyg().tolist()))
    sym_edges = list(zip(*sym.to_pyg().tolist()))
    assert len(sym_edges) == len(set(sym_edges))
    assert set(sym_edges) == edges | {(b, a) for a, b in edges}
    assert not sym.is_regular or sym.num_edges == graph.num_edges
    with pytest.raises(ValueError, match="regular"):
        sym.neighbors
    assert ProximityGraph.build(x, k=3, m=20, seed=0, symmetrize=True).num_edges == sym.num_edges


def test_save_load_roundtrip(tmp_path):
    x = np.random.default_rng(5).standard_normal((60, 5))
    graph = ProximityGraph.build(x, k=3, m=20, seed=0)
    graph.save(tmp_path / "g.npz")
    loaded = ProximityGraph.load(tmp_path / "g.npz")
    np.testing.assert_array_equal(loaded.indptr, graph.indptr)
    np.testing.assert_array_equal(loaded.indices, graph.indices)
    np.testing.assert_array_equal(loaded.scores, graph.scores)
    assert loaded.build_params == graph.build_params
    np.save(tmp_path / "not_a_graph.npy", x)
    np.savez(tmp_path / "other.npz", x=x)
    with pytest.raises(ValueError, match="not a saved ProximityGraph"):
        ProximityGraph.load(tmp_path / "other.npz")


def test_repr_abridges_long_records():
    x = np.random.default_rng(5).standard_normal((60, 5))
    graph = ProximityGraph.build(x, k=3, m=20, seed=0)
    graph.build_params["hardness"] = {"aim": 0.5, "rest_pairs": [float(i) for i in range(30)]}
    text = repr(graph)
    assert "'aim': 0.5" in text and "<30 values>" in text and "29.0" not in text
    assert graph.build_params["hardness"]["rest_pairs"][-1] == 29.0  # the record itself is whole


def test_exports_agree():
    x = np.random.default_rng(6).standard_normal((50, 5))
    graph = ProximityGraph.build(x, k=4, m=20, seed=0)
    adjacency = graph.to_scipy()
    assert adjacency.shape == (50, 50) and adjacency.nnz == 200
    rows, cols = adjacency.nonzero()
    edge_index = graph.to_pyg()
    assert edge_index.dtype == torch.int64 and edge_index.shape == (2, 200)
    assert set(zip(rows.tolist(), cols.tolist())) == set(zip(*edge_index.tolist()))
    nx_graph = graph.to_networkx()
    assert isinstance(nx_graph, nx.DiGraph) and nx_graph.number_of_edges() == 200
    a, b = edge_index[:, 0].tolist()
    assert nx_graph[a][b]["weight"] == pytest.approx(float(graph.scores[0]))
    assert graph.to_scipy(weighted=False).sum() == 200


@pytest.mark.parametrize(
    "embeddings, kwargs, argument",
    [
        (np.full((10, 3), np.nan), {}, "embeddings"),
        (np.array([[0.0, np.inf], [1.0, 2.0], [3.0, 4.0]]), {}, "embeddings"),
        (np.zeros(10), {}, "embeddings"),
        (np.zeros((0, 3)), {}, "embeddings"),
        (np.zeros((10, 3)), {"k": 0}, "k"),
        (np.zeros((10, 3)), {"k": 10}, "k"),
        (np.zeros((10, 3)), {"k": 5, "m": 4}, "m"),
        (np.zeros((10, 3)), {"k": 2, "mask": np.ones(9, dtype=bool)}, "mask"),
        (np.zeros((10, 3)), {"k": 2, "mask": np.arange(10) < 2}, "mask"),
    ],
)
def test_bad_input_raises_naming_the_argument(embeddings, kwargs, argument):
    kwargs = {"k": 2, "m": 5, **kwargs}
    with pytest.raises(ValueError, match=rf"^{argument}\b"):
        ProximityGraph.build(embeddings, **kwargs)


def test_non_integer_k_is_a_type_error():
    with pytest.raises(TypeError, match=r"^k\b"):
        ProximityGraph.build(np.zeros((10, 3)), k=2.5, m=5)


# ---------------------------------------------------------------------- backends and sharding



def _clusters(n, dim, num_clusters, seed=0, spread=0.5):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((num_clusters, dim))
    labels = rng.integers(num_clusters, size=n)
    return (centers[labels] + spread * rng.standard_normal((n, dim))).astype(np.float32)


def _recall(graph, reference):
    hits = [len(set(a) & set(b)) for a, b in zip(graph.neighbors.tolist(), reference.tolist())]
    return sum(hits) / reference.size


def test_exact_backend_matches_brute_force_for_any_m():
    x = np.random.default_rng(7).standard_normal((400, 6)).astype(np.float32)
    graph = ProximityGraph.build(x, k=9, m=20, backend="exact")
    assert graph.build_params["backend"] == "exact" and graph.build_params["exact"]
    np.testing.assert_array_equal(graph.neighbors, _brute_force_knn(x, 9))
    unit = _unit(x)
    np.testing.assert_allclose(graph.scores.reshape(400, 9), np.einsum("nd,nkd->nk", unit, unit[graph.neighbors]), atol=1e-5)


@pytest.mark.parametrize("tiles", [None, [0, 2, 4], [1, 3]])
def test_exact_tiles_symmetric_and_sharded_match_brute_force(tiles):
    # Tiles of 64 rows: many off-diagonal pairs, an odd tile count and a short last tile.
    x = _unit(np.random.default_rng(8).standard_normal((300, 5))).astype(np.float32)
    rows, neighbors, scores = _knn.exact_rows(x, 12, tiles, tile=64, workers=2)
    expected_rows = np.arange(300) if tiles is None else np.concatenate([np.arange(t * 64, min(300, t * 64 + 64)) for t in tiles])
    np.testing.assert_array_equal(rows, expected_rows)
    np.testing.assert_array_equal(neighbors, _brute_force_knn(x, 12)[rows])
    assert (np.diff(scores, axis=1) <= 0).all()


def test_round_robin_rounds_cover_every_pair_once_with_disjoint_tiles():
    for count in (1, 2, 5, 8):
        rounds = _knn.round_robin_rounds(count)
        pairs = [pair for tasks in rounds for pair in tasks]
        assert sorted(pairs) == [(i, j) for i in range(count) for j in range(i + 1, count)]
        for tasks in rounds:
            tiles = [t for pair in tasks for t in pair]
            assert len(tiles) == len(set(tiles))


@pytest.mark.parametrize("backend, threshold", [("hnsw", 0.9), ("ivf", 0.8)])
def test_approximate_backends_recall(backend, threshold):
    x = _clusters(2000, 16, 20, seed=1)
    exact = ProximityGraph.build(x, k=10, m=2000)
    graph = ProximityGraph.build(x, k=10, backend=backend, seed=0, num_threads=1)
    _assert_simple(graph)
    assert graph.build_params["backend"] == backend
    assert _recall(graph, exact.neighbors) >= threshold
    assert (np.diff(graph.scores.reshape(-1, 10), axis=1) <= 1e-6).all()


def test_ivf_fills_short_result_lists_and_rejects_unknown_params():
    x = _clusters(500, 8, 5, seed=2)
    # One probed cell out of many: some queries see fewer than k + 1 points.
    graph = ProximityGraph.build(x, k=20, backend="ivf", index_params={"nlist": 60, "nprobe": 1}, seed=0)
    _assert_simple(graph)
    with pytest.raises(ValueError, match="index_params"):
        ProximityGraph.build(x, k=5, backend="hnsw", index_params={"nprobe": 3})
    with pytest.raises(ValueError, match=r"^backend\b"):
        ProximityGraph.build(x, k=5, backend="annoy")


@pytest.mark.parametrize("world_size", [1, 2, 3])
@pytest.mark.parametrize("masked", [False, True])
def test_shards_union_is_bit_identical_to_build(world_size, masked):
    x = _clusters(1500, 12, 10, seed=3)
    mask = None
    if masked:
        mask = np.ones(len(x), dtype=bool)
        mask[::5] = False
    kwargs = {"k": 8, "m": 60, "seed": np.random.SeedSequence([4, 1, 2]), "mask": mask, "block_size": 16}
    graph = ProximityGraph.build(x, **kwargs)
    seen = np.zeros(len(x), dtype=int)
    for rank in range(world_size):
        rows, neighbors, scores = build_neighbor_rows(x, shard=(rank, world_size), num_threads=1, **kwargs)
        assert rows.dtype == neighbors.dtype == np.int64 and scores.dtype == np.float32
        seen[rows] += 1
        np.testing.assert_array_equal(neighbors, graph.neighbors[rows])
        np.testing.assert_array_equal(scores.view(np.int32), graph.scores.reshape(-1, 8)[rows].view(np.int32))
    assert (seen == 1).all()


def test_bad_shard_raises():
    with pytest.raises(ValueError, match="shard"):
        build_neighbor_rows(np.zeros((10, 3)), k=2, m=5, shard=(2, 2))
    with pytest.raises(ValueError, match="shard"):
        build_neighbor_rows(np.zeros((10, 3)), k=2, m=5, shard=3)


def test_thread_count_does_not_change_the_graph():
    x = _clusters(3000, 16, 30, seed=4)
    one = ProximityGraph.build(x, k=10, m=100, seed=1, num_threads=1)
    two = ProximityGraph.build(x, k=10, m=100, seed=1, num_threads=2)
    np.testing.assert_array_equal(one.neighbors, two.neighbors)
    np.testing.assert_array_equal(one.scores, two.scores)


def test_every_node_has_an_in_edge_on_clustered_data():
    # 20k nodes in clusters of very different sizes and spreads: hubs and anti-hubs.
    rng = np.random.default_rng(5)
    sizes = rng.zipf(1.6, size=400).clip(max=4000)
    labels = np.repeat(np.arange(sizes.size), sizes)[:20000]
    labels = np.concatenate([labels, rng.integers(sizes.size, size=20000 - labels.size)])
    centers = rng.standard_normal((sizes.size, 32))
    spread = rng.uniform(0.2, 1.5, size=sizes.size)
    x = centers[labels] + spread[labels, None] * rng.standard_normal((20000, 32))
    graph = ProximityGraph.build(x, k=100, m=1000, seed=0)
    in_degrees = graph.in_degrees()
    assert np.mean(in_degrees == 0) < 0.01
    assert in_degrees.sum() == 20000 * 100


def test_candidates_are_stratified():
    # Each node is a candidate of about (number of blocks) * (m + 1) / N blocks, never 0.
    plan = _knn.plan_random(1000, 99, np.random.default_rng(0), 25)
    counts = np.bincount(plan.candidates.ravel(), minlength=1000)
    assert counts.min() >= 3 and counts.max() <= 5
    assert all(len(set(row)) == len(row) for row in plan.candidates.tolist())
    slots = np.arange(1000)
    own = plan.candidates[slots // 25, plan.masked] == plan.anchors
    is_candidate = np.array([plan.anchors[s] in set(plan.candidates[s // 25].tolist()) for s in slots])
    np.testing.assert_array_equal(own, is_candidate)


@pytest.mark.parametrize("num_nodes, k", [(1_000_000, 50), (12, 11), (40, 12)])
def test_random_distinct_neighbors(num_nodes, k):
    rows = np.arange(min(num_nodes, 300))
    out = random_distinct_neighbors(np.random.default_rng(0), rows, k, num_nodes)
    assert out.shape == (rows.size, k) and out.min() >= 0 and out.max() < num_nodes
    assert not (out == rows[:, None]).any()
    assert all(len(set(row)) == k for row in out.tolist())


def test_build_refuses_to_run_in_a_dataloader_worker(monkeypatch):
    from torch.utils.data._utils import worker

    monkeypatch.setattr(worker, "_worker_info", object())
    with pytest.raises(RuntimeError, match="main process"):
        ProximityGraph.build(np.zeros((10, 3)), k=2, m=5)
