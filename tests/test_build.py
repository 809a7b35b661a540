"""Graph construction internals: the random edges of masked rows, the threshold search of the
random-candidate selection, and the checks ``build_rows`` makes on the embedding rows."""

from __future__ import annotations

import logging
from itertools import permutations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batchsampler import ProximityGraph
from batchsampler._build import random_distinct_neighbors
from batchsampler._select import _find_threshold

# ---------------------------------------------------------------------- random_distinct_neighbors


def _chi_square(counts: np.ndarray) -> float:
    expected = counts.sum() / counts.size
    return float(((counts - expected) ** 2 / expected).sum())


def test_random_distinct_neighbors_is_uniform_over_ordered_subsets():
    # N = 6, k = 3, row 2: the 5 * 4 * 3 = 60 ordered triples of {0, 1, 3, 4, 5} equally likely.
    draws = 60_000
    out = random_distinct_neighbors(np.random.default_rng(0), np.full(draws, 2), 3, 6)
    assert out.dtype == np.int64 and out.shape == (draws, 3)
    triples = {t: i for i, t in enumerate(permutations([0, 1, 3, 4, 5], 3))}
    counts = np.bincount([triples[tuple(row)] for row in out.tolist()], minlength=len(triples))
    assert counts.size == 60  # nothing outside the 60 triples (no 2, no repeat)
    # 59 degrees of freedom: P(chi2 > 110) < 1e-4 (the seed is fixed: this is deterministic).
    assert _chi_square(counts) < 110


@pytest.mark.parametrize("num_nodes, k", [(50, 10), (1000, 200), (500, 118), (40, 39)])
def test_random_distinct_neighbors_covers_values_evenly(num_nodes, k):
    rows = np.arange(num_nodes).repeat(40)
    out = random_distinct_neighbors(np.random.default_rng(1), rows, k, num_nodes)
    assert not (out == rows[:, None]).any()
    ordered = np.sort(out, axis=1)
    assert not (ordered[:, 1:] == ordered[:, :-1]).any()
    # Every node is drawn by the rows of every other node equally often: each of the N
    # values, and each position of the row, is uniform.
    for column in (out.ravel(), out[:, 0], out[:, -1]):
        counts = np.bincount(column, minlength=num_nodes)
        assert counts.size == num_nodes
        assert _chi_square(counts) < num_nodes - 1 + 6 * np.sqrt(2 * (num_nodes - 1))


def test_random_distinct_neighbors_is_deterministic_and_exact():
    rows = np.array([0, 5, 9, 9, 3])
    first = random_distinct_neighbors(np.random.default_rng(7), rows, 4, 10)
    np.testing.assert_array_equal(first, random_distinct_neighbors(np.random.default_rng(7), rows, 4, 10))
    # k = N - 1: every other node, in some order.
    full = random_distinct_neighbors(np.random.default_rng(7), rows, 9, 10)
    for row, out in zip(rows.tolist(), full.tolist()):
        assert sorted(out) == [i for i in range(10) if i != row]
    assert random_distinct_neighbors(np.random.default_rng(0), np.zeros(0, np.int64), 3, 10).shape == (0, 3)
    with pytest.raises(ValueError, match="^k must be < num_nodes"):
        random_distinct_neighbors(np.random.default_rng(0), rows, 10, 10)


def test_random_distinct_neighbors_at_a_million_nodes():
    rows = np.random.default_rng(2).choice(1_000_000, size=3000, replace=False)
    out = random_distinct_neighbors(np.random.default_rng(3), rows, 100, 1_000_000)
    assert out.min() >= 0 and out.max() < 1_000_000
    assert not (out == rows[:, None]).any()
    ordered = np.sort(out, axis=1)
    assert not (ordered[:, 1:] == ordered[:, :-1]).any()


# ---------------------------------------------------------------------- _find_threshold

_VALUES = st.one_of(
    st.sampled_from([0.0, -0.0, 0.5, -0.5, 1.0, 1e-38, -1e-45, 3e38, -3e38]),
    st.floats(-1.0, 1.0, width=32),
    st.floats(width=32, allow_nan=False, allow_infinity=False),
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(_VALUES, min_size=3, max_size=80),
    st.integers(0, 3),  # NaN entries (never counted)
    st.data(),
)
def test_find_threshold_returns_a_valid_window(values, nans, data):
    row = np.array(values + [np.nan] * nans + [-np.inf], dtype=np.float32)  # -inf: the masked column
    finite = len(values)
    k = data.draw(st.integers(1, finite - 1))
    cap = data.draw(st.integers(k, finite))
    guess = np.float32(data.draw(st.one_of(st.floats(width=32), st.sampled_from([0.0, 1e30]))))
    step = np.float32(data.draw(st.one_of(st.floats(0.0009765625, 1048576.0, width=32), st.just(float("nan")))))
    t, hi, found = _find_threshold(row, k, cap, guess, step)

    def count(v):
        return int(np.count_nonzero(row >= v))

    if found:
        assert k <= count(t) <= cap
    else:
        # Ties: the window is unreachable; lo = t and hi are adjacent floats around it.
        assert t < hi and np.nextafter(t, np.float32(np.inf)) >= hi
        assert count(t) > cap and count(hi) < k


# ---------------------------------------------------------------------- checks on the rows


def test_all_zero_rows_are_reported_with_their_count(caplog):
    x = np.random.default_rng(0).standard_normal((1000, 8)).astype(np.float32)
    x[:37] = 0
    with caplog.at_level(logging.WARNING, logger="batchsampler"):
        ProximityGraph.build(x, k=10, m=100, seed=0)
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(m.startswith("37 of 1000 embedding rows are all zero") for m in messages), messages

    caplog.clear()
    mask = np.ones(1000, dtype=bool)
    mask[:30] = False  # 30 of the zero rows are left out: 7 remain among the 970 kept
    with caplog.at_level(logging.WARNING, logger="batchsampler"):
        ProximityGraph.build(x, k=10, m=100, seed=0, mask=mask)
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(m.startswith("7 of the 970 rows the mask keeps are all zero") for m in messages), messages

    caplog.clear()
    mask[:37] = False
    with caplog.at_level(logging.WARNING, logger="batchsampler"):
        ProximityGraph.build(x, k=10, m=100, seed=0, mask=mask)
        ProximityGraph.build(x[37:], k=10, m=100, seed=0, backend="exact")
    assert not [r for r in caplog.records if "all zero" in r.getMessage()]


@pytest.mark.parametrize("backend", ["random", "exact"])
def test_rows_whose_products_overflow_float32_give_the_unit_rows_graph(backend):
    x = np.random.default_rng(4).standard_normal((600, 8))
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    scaled = unit.copy()
    scaled[5] *= 1e200  # finite in float64, inf in float32
    scaled[6] *= 1e30  # finite in float32, its square is not
    expected = ProximityGraph.build(unit, k=6, m=80, seed=1, backend=backend)
    graph = ProximityGraph.build(scaled, k=6, m=80, seed=1, backend=backend)
    np.testing.assert_array_equal(graph.neighbors, expected.neighbors)


# ---------------------------------------------------------------------- build_rows(out=...)


def _rows_kwargs(**overrides):
    kwargs = {
        "seed": 5, "mask": None, "backend": "random", "block_size": None, "index_params": None,
        "num_threads": 1, "keep_scores": True, "show_progress": False,
    }
    return {**kwargs, **overrides}


@pytest.mark.parametrize("backend, masked", [("random", False), ("random", True), ("exact", False)])
@pytest.mark.parametrize("world", [1, 3])
def test_build_rows_into_out_tables_gives_the_rows_of_the_shards(backend, masked, world):
    from batchsampler._build import build_rows

    n, k, m = 2000, 8, 60
    x = np.random.default_rng(1).standard_normal((n, 12)).astype(np.float32)
    kwargs = _rows_kwargs(backend=backend, mask=np.arange(n) % 7 != 0 if masked else None)
    expected_neighbors = np.full((n, k), -1, np.int32)
    expected_scores = np.full((n, k), -2.0, np.float32)
    neighbors = expected_neighbors.copy()
    scores = expected_scores.copy()
    for rank in range(world):
        plain = build_rows(x, k, m, shard=(rank, world), **kwargs)
        rows = slice(None) if plain.rows is None else plain.rows
        expected_neighbors[rows], expected_scores[rows] = plain.neighbors, plain.scores
        built = build_rows(x, k, m, shard=(rank, world), out=(neighbors, scores), **kwargs)
        assert built.neighbors is neighbors and built.scores is scores
        assert (built.rows is None) == (plain.rows is None)
        if plain.rows is not None:
            np.testing.assert_array_equal(built.rows, plain.rows)
    # Bit for bit the rows of the plain shards, every row written once (none left at the fill).
    np.testing.assert_array_equal(neighbors, expected_neighbors)
    np.testing.assert_array_equal(scores, expected_scores)
    assert (neighbors >= 0).all()


def test_build_rows_rejects_out_tables_of_the_wrong_kind():
    from batchsampler._build import build_rows

    x = np.random.default_rng(1).standard_normal((100, 4)).astype(np.float32)
    good = (np.zeros((100, 5), np.int32), np.zeros((100, 5), np.float32))
    bad = [
        (np.zeros((100, 5), np.int64), good[1]),
        (good[0], np.zeros((99, 5), np.float32)),
        (np.zeros((5, 100), np.int32).T, good[1]),
        (good[0], None),
        good[0],
    ]
    for out in bad:
        with pytest.raises(ValueError, match="out"):
            build_rows(x, 5, 20, shard=(0, 2), out=out, **_rows_kwargs())
    with pytest.raises(ValueError, match="None when scores are not kept"):
        build_rows(x, 5, 20, shard=(0, 2), out=good, **_rows_kwargs(keep_scores=False))
    built = build_rows(x, 5, 20, shard=(0, 2), out=(good[0], None), **_rows_kwargs(keep_scores=False))
    assert built.neighbors is good[0] and built.scores is None


def test_inverse_norms_from_the_checked_squares_are_those_of_knn():
    from batchsampler import _knn
    from batchsampler._build import _check_rows, _inverse_norms

    rng = np.random.default_rng(2)
    x = (rng.standard_normal((500, 24)) * rng.uniform(1e-20, 1e15, size=(500, 1))).astype(np.float32)
    x[:3] = 0.0
    checked, squares = _check_rows(x, 500, False)
    assert checked is x and squares is not None
    np.testing.assert_array_equal(_inverse_norms(x, squares), _knn.inverse_norms(x))
    # float64 rows: no squares (the build casts to float32 and computes its own)
    assert _check_rows(x.astype(np.float64), 500, False)[1] is None
