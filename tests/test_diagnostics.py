import numpy as np
import pytest

from batchsampler import EmbeddingBank, ProximityGraph, WalkStats
from batchsampler.diagnostics import (
    batch_statistics,
    expected_same_label_neighbors,
    summarize_epoch,
    summarize_graph,
    summarize_staleness,
    summarize_walk,
)
from batchsampler.diagnostics.batches import histogram_quantiles

# ---------------------------------------------------------------------- batches


def test_hand_computed_summary():
    embeddings = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 2.0]])
    labels = np.array([0, 0, 1, 0])
    summary = summarize_epoch([[0, 1], [2, 3, 0], [3]], 5, embeddings=np.vstack([embeddings, [[1.0, 1.0]]]), labels=np.append(labels, 2))
    assert summary.num_batches == 3 and summary.num_indices == 6
    assert summary.coverage == pytest.approx(4 / 5)
    assert summary.repeats == 2  # 0 and 3 appear twice
    # Pairs (ordered): batch 1: 2 pairs with cos 1; batch 2: (2,3) cos 1, (2,0) 0, (3,0) 0 -> 2 pairs of 1 of 6.
    assert summary.mean_similarity == pytest.approx((2 + 2) / (2 + 6))
    # Same label: batch 1: 2 of 2; batch 2: labels 1, 0, 0 -> 2 of 6.
    assert summary.same_label_share == pytest.approx((2 + 2) / 8)


def test_without_embeddings_or_labels():
    summary = summarize_epoch([[0, 1, 2]], 3)
    assert summary.mean_similarity is None and summary.same_label_share is None
    assert summary.similarity_q50 is None
    assert summary.as_dict()["coverage"] == 1.0


def test_mismatched_rows_raise():
    with pytest.raises(ValueError, match=r"^embeddings\b"):
        summarize_epoch([[0]], 3, embeddings=np.ones((2, 2)))
    with pytest.raises(ValueError, match=r"^labels\b"):
        summarize_epoch([[0]], 3, labels=[1, 2])
    with pytest.raises(ValueError, match=r"^batches\b"):
        summarize_epoch([[0, 3]], 3)
    with pytest.raises(TypeError, match=r"^batches\b"):
        batch_statistics([[0.5, 1.0]], 3)
    with pytest.raises(ValueError, match=r"^valid\b"):
        summarize_epoch([[0, 1]], 3, embeddings=np.ones((3, 2)), valid=np.ones(2, dtype=bool))


def test_per_batch_statistics_by_hand():
    # Unit vectors: 0 and 1 equal, 2 orthogonal to them, 3 opposite to 0 and 1.
    embeddings = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    labels = np.array([0, 0, 1, 1])
    stats = batch_statistics([[0, 1, 2, 3], [2], [0, 2]], 4, embeddings=embeddings, labels=labels)
    np.testing.assert_array_equal(stats.sizes, [4, 1, 2])
    # Batch 0, pairs: (0,1)=1, (0,2)=0, (0,3)=-1, (1,2)=0, (1,3)=-1, (2,3)=0.
    assert stats.mean_similarity[0] == pytest.approx(-1 / 6)
    np.testing.assert_allclose(stats.similarity_quantiles[0], np.quantile([1, 0, -1, 0, -1, 0], [0.1, 0.5, 0.9]))
    assert stats.same_label_share[0] == pytest.approx(2 / 6)
    assert np.isnan(stats.mean_similarity[1]) and np.isnan(stats.same_label_share[1])  # no pair
    assert stats.mean_similarity[2] == pytest.approx(0.0) and stats.same_label_share[2] == 0.0


def test_per_batch_statistics_match_a_naive_loop():
    rng = np.random.default_rng(3)
    embeddings = rng.standard_normal((50, 5))
    labels = rng.integers(0, 4, size=50)
    batches = [rng.choice(50, size, replace=False) for size in (7, 3, 7, 12, 2, 7)]
    stats = batch_statistics(batches, 50, embeddings=embeddings, labels=labels)
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    for number, batch in enumerate(batches):
        pairs = [(i, j) for a, i in enumerate(batch) for j in batch[a + 1:]]
        similarity = [unit[i] @ unit[j] for i, j in pairs]
        assert stats.mean_similarity[number] == pytest.approx(np.mean(similarity), abs=1e-6)
        np.testing.assert_allclose(stats.similarity_quantiles[number], np.quantile(similarity, [0.1, 0.5, 0.9]), atol=1e-6)
        assert stats.same_label_share[number] == pytest.approx(np.mean([labels[i] == labels[j] for i, j in pairs]))


def test_epoch_quantiles_follow_the_pooled_pairs():
    rng = np.random.default_rng(0)
    embeddings = rng.standard_normal((400, 8))
    batches = np.array_split(rng.permutation(400), 10)
    summary = summarize_epoch(batches, 400, embeddings=embeddings)
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    pooled = np.concatenate([(unit[b] @ unit[b].T)[np.triu_indices(len(b), 1)] for b in batches])
    assert summary.mean_similarity == pytest.approx(pooled.mean(), abs=1e-6)
    expected = np.quantile(pooled, [0.1, 0.5, 0.9])
    assert [summary.similarity_q10, summary.similarity_q50, summary.similarity_q90] == pytest.approx(expected, abs=2e-3)


def test_histogram_quantiles_interpolate_inside_a_bin():
    counts = np.zeros(4, dtype=np.int64)  # bins [-1,-.5), [-.5,0), [0,.5), [.5,1]
    counts[[1, 3]] = [1, 3]
    assert histogram_quantiles(counts, [0.25, 0.5, 1.0]) == pytest.approx([0.0, 2 / 3, 1.0])
    assert np.isnan(histogram_quantiles(np.zeros(4), [0.5])[0])


def test_invalid_rows_are_left_out_of_similarities_only():
    embeddings = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    valid = np.array([True, True, True, False])
    summary = summarize_epoch([[0, 1, 2, 3]], 4, embeddings=embeddings, labels=[0, 0, 1, 1], valid=valid)
    assert summary.mean_similarity == pytest.approx((1 + 0 + 0) / 3)  # pairs among 0, 1, 2
    assert summary.same_label_share == pytest.approx(2 / 6)  # labels still use every pair
    stats = batch_statistics([[2, 3]], 4, embeddings=embeddings, valid=valid)
    assert np.isnan(stats.mean_similarity[0])


# ---------------------------------------------------------------------- graph, walk, bank


def _ring_graph():
    # Three weak components: 0->1->2->3->0, 4<->5, 6<->7.
    return ProximityGraph.from_neighbors(np.array([[1], [2], [3], [0], [5], [4], [7], [6]]), build_params={"k": 1, "m": 3})


def test_graph_summary_by_hand():
    labels = np.array([0, 0, 1, 1, 0, 1, 0, 0])
    summary = summarize_graph(_ring_graph(), labels)
    assert (summary.num_nodes, summary.num_edges, summary.out_degree_mean) == (8, 8, 1.0)
    assert summary.num_components == 3
    assert summary.largest_component_share == 0.5 and summary.smallest_component_size == 2
    assert summary.no_in_edge_share == 0.0 and summary.in_degree_max == 1
    # Same-label edges: 0->1, 2->3, 6->7, 7->6 of 8.
    assert summary.neighbor_same_label_rate == 0.5 and summary.same_label_neighbors == 0.5
    assert summary.mean_edge_similarity is None


def test_graph_summary_in_degrees_of_a_star():
    star = ProximityGraph.from_neighbors(np.array([[1], [0], [0], [0]]), scores=np.array([[0.5], [0.5], [0.2], [0.2]]))
    summary = summarize_graph(star)
    assert summary.num_components == 1 and summary.largest_component_share == 1.0
    assert (summary.in_degree_min, summary.in_degree_max) == (0, 3)
    assert summary.no_in_edge_share == 0.5
    assert summary.in_degree_q50 == pytest.approx(0.5)  # in-degrees 3, 1, 0, 0
    assert summary.mean_edge_similarity == pytest.approx(0.35)
    assert summary.neighbor_same_label_rate is None and summary.expected_same_label_neighbors is None


def test_built_graph_over_separated_clusters_has_one_component_per_cluster(clustered):
    embeddings, labels = clustered
    graph = ProximityGraph.build(embeddings, k=5, m=len(embeddings) - 1, seed=0)
    summary = summarize_graph(graph, labels)
    assert summary.num_components == 6
    assert summary.largest_component_share == pytest.approx(40 / 240)
    assert summary.neighbor_same_label_rate == 1.0 and summary.same_label_neighbors == 5.0
    # Exact kNN, K = 5 < 39 classmates: the rule of thumb says all 5 neighbours share the class.
    assert summary.expected_same_label_neighbors == pytest.approx(5.0)


def test_graph_summary_errors():
    with pytest.raises(TypeError, match="graph"):
        summarize_graph(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="labels"):
        summarize_graph(_ring_graph(), labels=[0, 1])


def test_rule_of_thumb_by_hand():
    labels = [0, 0, 0, 1]  # class 0 nodes: p = 2/3 of the others; the class 1 node: p = 0
    assert expected_same_label_neighbors(labels, k=1, m=3) == pytest.approx(3 / 4)  # min(1, 2) for three nodes
    assert expected_same_label_neighbors(labels, k=2, m=2) == pytest.approx(3 * (4 / 3) / 4)  # min(2, 4/3)
    assert expected_same_label_neighbors(labels, k=2, m=100) == pytest.approx(3 * 2 / 4)  # m capped at N - 1
    with pytest.raises(ValueError, match="m >= k"):
        expected_same_label_neighbors(labels, k=3, m=2)
    with pytest.raises(ValueError, match="labels"):
        expected_same_label_neighbors([1], k=1, m=1)


def test_rule_of_thumb_is_exact_on_average_for_random_neighbours():
    # m = k: the k neighbours are a uniform draw, so p * k of them share the class on average.
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, size=2000)
    graph = ProximityGraph.build(rng.standard_normal((2000, 4)), k=20, m=20, seed=0)
    summary = summarize_graph(graph, labels)
    assert summary.same_label_neighbors == pytest.approx(summary.expected_same_label_neighbors, rel=0.05)


def test_walk_summary_by_hand():
    walk = summarize_walk(WalkStats(steps=10, restarts=2, reseeds=1), num_batches=2, num_indices=8)
    assert walk == {"steps": 10, "restarts": 2, "reseeds": 1, "steps_per_index": 1.25, "restart_share": 0.2,
                    "reseeds_per_batch": 0.5}
    assert summarize_walk(WalkStats(), 0, 0)["restart_share"] == 0.0
    with pytest.raises(TypeError, match="stats"):
        summarize_walk({"steps": 1}, 1, 1)


def test_staleness_summary_by_hand():
    bank = EmbeddingBank(4)
    assert summarize_staleness(bank) is None
    bank.update([0, 1], np.ones((2, 3)))
    bank.update([1], np.ones((1, 3)))
    bank.update([2], np.ones((1, 3)))
    summary = summarize_staleness(bank)  # staleness 2, 1, 0 for rows 0, 1, 2; row 3 never seen
    assert summary == {"seen_share": 0.75, "mean": 1.0, "q50": 1.0, "q90": pytest.approx(1.8), "max": 2, "updates": 3}
    with pytest.raises(TypeError, match="bank"):
        summarize_staleness(np.zeros(3))
