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


def _random_graph(num_nodes, k, seed=0):
    x = np.random.default_rng(seed).standard_normal((num_nodes, 8)).astype(np.float32)
    return ProximityGraph.build(x, k=k, m=min(4 * k, num_nodes - 2), seed=seed)


@pytest.mark.parametrize("num_walkers", [1, 3, 16, 1000])
@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("restart_prob", [0.0, 0.3, 1.0])
def test_lockstep_walkers_partition_the_epoch(num_walkers, drop_last, restart_prob):
    graph = _random_graph(503, 6)
    stats = WalkStats()
    batches = list(
        random_walk_batches(graph, 32, restart_prob, np.random.default_rng(4), drop_last=drop_last,
                            num_walkers=num_walkers, stats=stats, max_fruitless_steps=16)
    )
    _check_partition(batches, 503, 32, drop_last)
    assert stats.steps >= 503 - len(batches) - stats.reseeds


def test_walk_is_deterministic_per_seed_and_walker_count():
    graph = _random_graph(400, 5)

    def epoch(seed, walkers):
        return list(random_walk_batches(graph, 25, 0.2, np.random.default_rng(seed), num_walkers=walkers))

    assert epoch(1, 16) == epoch(1, 16)
    assert epoch(1, 16) != epoch(2, 16)
    assert epoch(1, 16) != epoch(1, 1)  # the walker count is part of the seeded result
    rng = np.random.default_rng(3)
    list(random_walk_batches(graph, 25, 0.2, rng))
    assert rng.random() != np.random.default_rng(3).random()  # the caller's generator advanced


def test_walk_is_identical_across_processes():
    import os
    import subprocess
    import sys

    def epochs():
        x = np.random.default_rng(0).standard_normal((300, 8))
        graph = ProximityGraph.build(x, k=5, m=20, seed=0)
        return [
            list(random_walk_batches(graph, 16, 0.2, np.random.default_rng(9))),
            list(neighborhood_batches(graph, 16, np.random.default_rng(9))),
        ]

    script = (
        "import numpy as np; from batchsampler import ProximityGraph;"
        "from batchsampler.walk import random_walk_batches, neighborhood_batches;"
        "x = np.random.default_rng(0).standard_normal((300, 8));"
        "graph = ProximityGraph.build(x, k=5, m=20, seed=0);"
        "print([list(random_walk_batches(graph, 16, 0.2, np.random.default_rng(9))),"
        "list(neighborhood_batches(graph, 16, np.random.default_rng(9)))])"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    output = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, env=env).stdout
    assert output.strip() == repr(epochs())


@pytest.mark.parametrize("walker", ["rwr", "bfs"])
def test_replacement_batches_are_full_and_distinct(walker):
    graph = _random_graph(200, 4)
    rng = np.random.default_rng(5)
    if walker == "rwr":
        batches = list(random_walk_batches(graph, 190, 0.5, rng, replacement=True, max_fruitless_steps=4))
    else:
        batches = list(neighborhood_batches(graph, 190, rng, replacement=True, max_fruitless_steps=4))
    assert len(batches) == 2
    assert all(len(b) == len(set(b)) == 190 for b in batches)


@pytest.mark.parametrize("drop_last", [False, True])
def test_bfs_partitions_the_epoch(drop_last):
    graph = _random_graph(333, 7)
    stats = WalkStats()
    batches = list(neighborhood_batches(graph, 20, np.random.default_rng(6), drop_last=drop_last, stats=stats))
    _check_partition(batches, 333, 20, drop_last)
    assert stats.steps > 0


def test_batch_size_one_and_whole_graph():
    graph = _components_graph(5, 4)
    for batch_size in (1, 20):
        for walk in (
            lambda rng, b=batch_size: random_walk_batches(graph, b, 0.2, rng),
            lambda rng, b=batch_size: neighborhood_batches(graph, b, rng),
        ):
            _check_partition(list(walk(np.random.default_rng(0))), 20, batch_size, drop_last=False)


@pytest.mark.parametrize("used_dtype", [np.bool_, np.uint8])
def test_grow_batches_in_groups_partition_the_epoch(used_dtype):
    from batchsampler.walk import grow_batches

    graph = _random_graph(501, 6)
    used = np.zeros(501, dtype=used_dtype)
    used[::7] = True  # taken earlier
    free = 501 - used.sum()
    sizes = [20] * (free // 20) + ([free % 20] if free % 20 else [])
    batches, stats = [], WalkStats()
    for start in range(0, len(sizes), 4):  # groups of 4 batches, each with its own generator
        rng = np.random.default_rng([9, start])
        batches += grow_batches(graph, used, sizes[start : start + 4], 0.2, rng, max_fruitless_steps=8, stats=stats)
    assert [len(b) for b in batches] == sizes
    flat = [i for b in batches for i in b]
    assert sorted(flat) == sorted(set(range(501)) - set(range(0, 501, 7)))
    assert used.all() and stats.steps > 0
    again = grow_batches(graph, np.zeros(501, dtype=used_dtype), [30, 30], 0.2, np.random.default_rng(1))
    assert again == grow_batches(graph, np.zeros(501, dtype=used_dtype), [30, 30], 0.2, np.random.default_rng(1))


def test_grow_batches_rejects_bad_input():
    from batchsampler.walk import grow_batches

    graph = _components_graph(3, 4)
    with pytest.raises(ValueError, match="^used"):
        grow_batches(graph, np.zeros(11, dtype=bool), [2], 0.2, np.random.default_rng(0))
    with pytest.raises(ValueError, match="^sizes"):
        grow_batches(graph, np.zeros(12, dtype=bool), [8, 5], 0.2, np.random.default_rng(0))
    assert grow_batches(graph, np.zeros(12, dtype=bool), [], 0.2, np.random.default_rng(0)) == []
