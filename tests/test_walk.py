import numpy as np
import pytest

from batchsampler import ProximityGraph, WalkStats
from batchsampler.walk import neighborhood_batches, num_batches, random_walk_batches


def _components_graph(num_components: int, size: int) -> ProximityGraph:
    """Disjoint cliques of ``size`` nodes: each node points to the others of its clique."""
    neighbors = []
    for node in range(num_components * size):
        base = node - node % size
        neighbors.append([base + j for j in range(size) if base + j != node])
    return ProximityGraph.from_neighbors(np.array(neighbors))


def _check_partition(batches, num_nodes, batch_size, drop_last):
    flat = [i for batch in batches for i in batch]
    assert len(batches) == num_batches(num_nodes, batch_size, drop_last)
    assert len(flat) == len(set(flat))
    if drop_last:
        assert all(len(batch) == batch_size for batch in batches)
    else:
        assert sorted(flat) == list(range(num_nodes))
        assert all(len(batch) == batch_size for batch in batches[:-1])


@pytest.mark.parametrize("restart_prob", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("walker", ["rwr", "bfs"])
def test_isolated_components_terminate(restart_prob, walker):
    # Components of 3 nodes (k = 2 < B - 1): no walk can fill a batch of 16 from one seed.
    graph = _components_graph(20, 3)
    rng = np.random.default_rng(0)
    stats = WalkStats()
    if walker == "rwr":
        batches = list(random_walk_batches(graph, 16, restart_prob, rng, stats=stats, max_fruitless_steps=8))
    else:
        batches = list(neighborhood_batches(graph, 16, rng, stats=stats, max_fruitless_steps=8))
    _check_partition(batches, 60, 16, drop_last=False)
    assert stats.reseeds > 0


def test_dead_ends_and_empty_graph_terminate():
    indptr = np.zeros(31, dtype=np.int64)  # 30 nodes, no edges at all
    graph = ProximityGraph(indptr, np.zeros(0, dtype=np.int32))
    for replacement in (False, True):
        batches = list(random_walk_batches(graph, 7, 0.2, np.random.default_rng(0), replacement=replacement))
        assert len(batches) == 5 and all(len(set(b)) == len(b) for b in batches)


def test_replacement_batches_are_full_and_recur():
    graph = _components_graph(10, 10)
    batches = list(random_walk_batches(graph, 10, 0.3, np.random.default_rng(1), replacement=True))
    assert len(batches) == 10
    assert all(len(set(b)) == 10 for b in batches)
    flat = [i for b in batches for i in b]
    assert len(set(flat)) < len(flat)  # independent batches overlap across the epoch


def test_high_restart_stays_in_the_seed_component():
    # Cliques of 20 with B = 10: a walk never leaves its clique, so each batch lies in one clique
    # as long as that clique has unused nodes (batches 1, 3, ... may straddle two cliques).
    graph = _components_graph(10, 20)
    batches = list(random_walk_batches(graph, 10, 0.5, np.random.default_rng(2)))
    one_clique = [len({node // 20 for node in batch}) == 1 for batch in batches]
    assert sum(one_clique) >= 10


def test_kNN_batch_is_anchor_and_its_nearest_neighbours():
    x = np.random.default_rng(3).standard_normal((200, 6)).astype(np.float32)
    graph = ProximityGraph.build(x, k=30, m=200)
    first = next(neighborhood_batches(graph, 16, np.random.default_rng(0)))
    anchor = first[0]
    assert first[1:] == graph.neighbors[anchor, :15].tolist()


def test_stats_count_restarts():
    graph = _components_graph(4, 50)
    stats = WalkStats()
    list(random_walk_batches(graph, 50, 0.5, np.random.default_rng(0), stats=stats))
    assert stats.steps > 0 and 0.35 < stats.restarts / stats.steps < 0.65
