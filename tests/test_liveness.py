"""Liveness: graph construction, refresh and the walk kernels always return (or raise).

Each test runs its whole workload in one subprocess with a generous timeout, so that a hang
(an unbounded retry loop, a seed search that never ends) fails the test instead of the CI job;
a timeout is a failure. Nothing here measures speed: the timeout is 100x what the work needs.

Known triggers of the old hangs:

* ``random_distinct_neighbors`` redrew a whole row until it held no duplicate (success
  probability about ``exp(-k^2 / 2N)``): a refresh with rows never updated and ``k`` near
  ``N / 4`` (``N = 1000, k = 200``; ``N = 500, k = 118``) never returned.
* every seed search (``collect._random_unused``, ``_walk_numba._take_seed``, the anchor
  cursor of ``bfs_epoch``) spun forever, or ran past the end of its array, when every index
  was already used (a checkpoint's batch history marking all of them).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 120


def _run(script: str, timeout: float = TIMEOUT_S) -> str:
    """Run ``script`` in a fresh interpreter; fail on a timeout or a non-zero exit."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(script)],
            cwd=ROOT, capture_output=True, text=True, timeout=timeout,
        )
    except subprocess.TimeoutExpired as error:
        out = (error.stdout or b"").decode(errors="replace") if isinstance(error.stdout, bytes) else (error.stdout or "")
        pytest.fail(f"no return within {timeout} s (a hang); output so far:\n{out[-4000:]}")
    if done.returncode != 0:
        pytest.fail(f"exit code {done.returncode}\nstdout:\n{done.stdout[-4000:]}\nstderr:\n{done.stderr[-6000:]}")
    return done.stdout


_SWEEP_PRELUDE = """
    import logging
    from datetime import timedelta

    import numpy as np
    from hypothesis import HealthCheck, example, given, settings, strategies as st

    logging.disable(logging.WARNING)  # zero rows, skipped refreshes: expected here
    SETTINGS = dict(
        deadline=timedelta(seconds=60),  # a per-example backstop only: 1000x the usual time
        derandomize=True, database=None, suppress_health_check=list(HealthCheck),
    )

    @st.composite
    def cases(draw):
        n = draw(st.integers(3, 1200))
        # k is drawn near N / 4 half of the time: where the old redraw loop never ended.
        near = draw(st.booleans())
        if near:
            k = draw(st.integers(max(1, n // 4 - n // 20), max(1, n // 4)))
        else:
            k = draw(st.integers(1, n - 2))
        share = draw(st.floats(0.0, 1.0))
        seen = min(n, max(k + 1, int(round(share * n))))  # a mask must keep more than k rows
        return n, min(k, n - 2), seen
"""


def test_build_with_a_partial_mask_always_returns():
    """``ProximityGraph.build(mask=...)``: rows not seen get random distinct edges."""
    out = _run(_SWEEP_PRELUDE + """
    from batchsampler.graph import ProximityGraph

    def check(n, k, seen, seed):
        rng = np.random.default_rng(seed)
        x = rng.normal(size=(n, 4)).astype(np.float32)
        mask = np.zeros(n, dtype=bool)
        mask[rng.choice(n, size=seen, replace=False)] = True
        m = int(rng.integers(k, 4 * k + 1))
        graph = ProximityGraph.build(x, k=k, m=m, seed=seed, mask=mask)
        neighbors = graph.neighbors
        assert neighbors.shape == (n, k)
        assert ((neighbors >= 0) & (neighbors < n)).all()
        assert not (neighbors == np.arange(n)[:, None]).any(), "self edge"
        ordered = np.sort(neighbors, axis=1)
        assert not (ordered[:, 1:] == ordered[:, :-1]).any(), "duplicate neighbour"
        assert mask[neighbors[mask]].all(), "a seen row links to an unseen one"

    # The old hangs, with few rows seen (most rows get random edges).
    for n, k, seen in [(1000, 200, 201), (500, 118, 119), (1000, 200, 300), (500, 118, 250), (1000, 150, 151)]:
        check(n, k, seen, 0)
    print("known cases ok", flush=True)

    @settings(max_examples=60, **SETTINGS)
    @given(cases(), st.integers(0, 2**32 - 1))
    def sweep(case, seed):
        check(*case, seed)

    sweep()
    print("sweep ok", flush=True)
    """)
    assert "sweep ok" in out


def test_refresh_with_a_partially_updated_bank_always_returns():
    """``BatchSampler.refresh()`` after updates that covered only part of the data set, then
    one exactly-once epoch on the new graph."""
    out = _run(_SWEEP_PRELUDE + """
    from batchsampler import BatchSampler

    def check(n, k, seen, seed):
        rng = np.random.default_rng(seed)
        batch_size = int(rng.integers(1, max(2, n // 3)))
        sampler = BatchSampler(n, batch_size, k=k, m=min(n - 1, 2 * k + 1), background=False, seed=seed)
        indices = rng.choice(n, size=seen, replace=False)
        sampler.update(indices, rng.normal(size=(seen, 3)))
        graph = sampler.refresh()
        assert graph is not None and graph.num_nodes == n and sampler.graph_version >= 1
        epoch = list(sampler)
        assert sorted(i for batch in epoch for i in batch) == list(range(n))

    for n, k, seen in [(1000, 200, 201), (500, 118, 119), (1000, 200, 400)]:
        check(n, k, seen, 1)
    print("known cases ok", flush=True)

    @settings(max_examples=40, **SETTINGS)
    @given(cases(), st.integers(0, 2**32 - 1))
    def sweep(case, seed):
        check(*case, seed)

    sweep()
    print("sweep ok", flush=True)
    """)
    assert "sweep ok" in out


def test_seed_searches_raise_when_every_index_is_used():
    """Every entry point that collects from a ``used`` mask raises ValueError (and leaves the
    mask as it was) when too few indices are unused: none spins, none reads past an array."""
    out = _run("""
    import numpy as np

    from batchsampler import BatchSampler, KNNBatchSampler
    from batchsampler import _walk_numba as kernels
    from batchsampler.collect import neighborhood_batch, take_random, walk_batch
    from batchsampler.graph import ProximityGraph
    from batchsampler.walk import grow_batches, neighborhood_batches, random_walk_batches

    n = 60
    rng = np.random.default_rng(0)
    graph = ProximityGraph.build(rng.normal(size=(n, 4)), k=5, m=20, seed=0)

    def expect_error(name, call, free, need):
        for dtype in (bool, np.uint8):
            used = np.ones(n, dtype=dtype)
            used[:free] = 0
            before = used.copy()
            try:
                call(used)
            except ValueError as error:
                message = str(error)
                assert f"fewer unused instances ({free})" in message and f"({need})" in message, (name, message)
            else:
                raise AssertionError(f"{name}: no ValueError with {free} unused of {n}")
            assert (used == before).all(), f"{name} changed used before raising"
        print(name, "ok", flush=True)

    for free in (0, 3):  # every index used; fewer unused than the batch needs
        expect_error(f"walk_batch[{free}]", lambda u: walk_batch(graph, u, 5, 0.2, rng), free, 5)
        expect_error(f"neighborhood_batch[{free}]", lambda u: neighborhood_batch(graph, u, 5, rng), free, 5)
        expect_error(f"take_random[{free}]", lambda u: take_random(u, 5, rng), free, 5)
        expect_error(f"grow_batches[{free}]", lambda u: grow_batches(graph, u, [2, 3], 0.2, rng), free, 5)

    # Exactly the unused ones: every entry point takes them all.
    for call in (
        lambda u: walk_batch(graph, u, 3, 0.2, rng),
        lambda u: neighborhood_batch(graph, u, 3, rng),
        lambda u: take_random(u, 3, rng),
        lambda u: [i for b in grow_batches(graph, u, [1, 2], 0.2, rng) for i in b],
    ):
        used = np.ones(n, dtype=bool)
        used[[7, 30, 59]] = False
        assert sorted(call(used)) == [7, 30, 59] and used.all()

    # The samplers' own collection paths (lockstep_batches=1 walks, the kNN baseline).
    data = rng.normal(size=(n, 4))
    for sampler in (
        BatchSampler(n, 8, k=5, m=20, embeddings=data, lockstep_batches=1, background=False),
        KNNBatchSampler(n, 8, k=5, embeddings=data, background=False),
    ):
        sampler.refresh()
        assert sampler.graph is not None
        try:
            sampler._collect(np.ones(n, dtype=bool), 8, np.random.default_rng(1))
        except ValueError as error:
            assert "fewer unused instances (0)" in str(error)
        else:
            raise AssertionError(f"{type(sampler).__name__}: no ValueError")
        print(type(sampler).__name__, "ok", flush=True)

    # The compiled kernels report -1 instead of spinning or reading past seed_order.
    counters = np.zeros(3, dtype=np.int64)
    for seed_order in (np.zeros(0, np.int64), rng.permutation(n)):
        used = np.ones(n, dtype=np.uint8)
        used[:2] = 0
        order = np.empty(10, dtype=np.int64)
        status = kernels.rwr_exactly_once(
            graph.indptr, graph.indices, 5, 0.2, 5, np.array([5, 5]), 4, 2, seed_order, rng, order, counters, used,
            np.zeros((0, 0), np.float32), np.zeros(0, np.int64), 0,
        )
        assert status == -1, status
    order = np.empty(2 * n, dtype=np.int64)
    for replacement, seed_order in ((False, rng.permutation(n)), (True, np.zeros(0, np.int64))):
        status = kernels.bfs_epoch(
            graph.indptr, graph.indices, n, 2 * n, np.array([2 * n]), 4, replacement, seed_order, rng, order, counters,
        )
        assert status == -1, status
    assert kernels.rwr_replacement(graph.indptr, graph.indices, 5, n, 0.2, 2 * n, 1, 4, rng, order, counters) == -1

    # Epoch-level entry points check what the kernels cannot satisfy.
    for call in (
        lambda: list(random_walk_batches(graph, n + 1, 0.2, rng, replacement=True)),
        lambda: list(neighborhood_batches(graph, n + 1, rng, replacement=True)),
        lambda: list(random_walk_batches(graph, 5, float("nan"), rng)),
    ):
        try:
            call()
        except ValueError:
            pass
        else:
            raise AssertionError("no ValueError")
    print("all ok", flush=True)
    """)
    assert "all ok" in out


def test_guided_reseeds_and_hardness_searches_always_return():
    """Guided re-seeds draw candidates by rejection (64 draws each, then a random re-seed) and the
    hardness search is capped at ``calibration_builds``: an exactly-once epoch on graphs where
    every walk stalls at once (k = 1, isolated pairs), banks with zero and identical rows,
    targets out of reach, and rescue walks in a band too tight to land in all return."""
    _run(
        """
        import logging
        import numpy as np
        from batchsampler import BatchSampler, ProximityGraph
        from batchsampler.walk import grow_batches

        logging.disable(logging.WARNING)
        rng = np.random.default_rng(0)
        for n, k, batch in ((64, 1, 8), (300, 3, 64), (1000, 1, 7)):
            x = rng.normal(size=(n, 4)).astype(np.float32)
            x[: n // 3] = 0.0  # zero rows: every cosine with them is 0
            graph = ProximityGraph.build(x, k, k, seed=0)
            used = np.zeros(n, dtype=bool)
            sizes = [batch] * (n // batch)
            batches = grow_batches(graph, used, sizes, 1.0, rng, max_fruitless_steps=1, vectors=x,
                                   reseed_candidates=1000)
            assert sum(map(len, batches)) == sum(sizes)
        same = np.ones((200, 3), dtype=np.float32)  # no structure: the search stops at once
        for target, x in ((1.0, rng.normal(size=(200, 3)).astype(np.float32)), (0.5, same)):
            for walks in (None, 64):  # extra candidate walks stop at max_candidate_walks
                sampler = BatchSampler(200, 16, k=5, m=40, seed=0, embeddings=x, target_hardness=target,
                                       calibration_builds=3, max_candidate_walks=walks)
                for _ in range(2):
                    assert sum(map(len, sampler)) == 200
        # Rescue walks that never land within a tight band stop at max_candidate_walks (64 here).
        data = np.random.default_rng(0)  # tests/test_hardness.py's 188 rows: the first epoch walks all 64
        centres = data.standard_normal((6, 16))
        x = (centres[data.integers(0, 6, 188)] + 0.9 * data.standard_normal((188, 16))).astype(np.float32)
        sampler = BatchSampler(188, 128, k=18, m=94, seed=0, embeddings=x, warmup_epochs=0, background=False,
                               target_hardness=0.6, hardness_tolerance=0.02)
        for _ in range(4):
            assert sorted(i for batch in sampler for i in batch) == list(range(188))
        print("ok")
        """
    )
