"""Relative hardness (batchsampler.hardness) and BatchSampler(target_hardness=...)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.datasets import load_digits

from batchsampler import BatchSampler, ProximityGraph
from batchsampler.hardness import (
    HardnessLadder,
    HardnessScale,
    hardness_scale,
    mean_pair_similarity,
    search_hardness,
)
from batchsampler.walk import grow_batches


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _brute_mean(unit, batches):
    values = [unit[a] @ unit[b] for batch in batches for i, a in enumerate(batch) for b in batch[i + 1 :]]
    return float(np.mean(values))


@pytest.fixture(scope="module")
def digits():
    x = load_digits().data.astype(np.float32)
    return x - x.mean(axis=0)


# ---------------------------------------------------------------------- references


def test_mean_pair_similarity_matches_brute_force():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 5)).astype(np.float32) * rng.uniform(0.5, 3, size=(30, 1)).astype(np.float32)
    batches = [rng.choice(30, size=s, replace=False) for s in (2, 5, 9)]
    assert mean_pair_similarity(x, batches) == pytest.approx(_brute_mean(_unit(x), batches), abs=1e-6)
    valid = np.ones(30, dtype=bool)
    valid[batches[2][:4]] = False
    kept = [b[valid[b]] for b in batches]
    assert mean_pair_similarity(x, batches, valid=valid) == pytest.approx(_brute_mean(_unit(x), kept), abs=1e-6)
    assert math.isnan(mean_pair_similarity(x, [[0], [3]]))


def test_hardness_scale_matches_brute_force():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 6)).astype(np.float32) + 0.5
    unit = _unit(x)
    scale = hardness_scale(x, 5, rng, num_seeds=40)
    gram = unit @ unit.T
    assert scale.uniform == pytest.approx((gram.sum() - 40) / (40 * 39), abs=1e-5)
    np.fill_diagonal(gram, -np.inf)
    knn_batches = [np.r_[i, np.argsort(-gram[i])[:4]] for i in range(40)]
    assert scale.knn == pytest.approx(_brute_mean(unit, knn_batches), abs=1e-5)
    assert scale.seeds == 40
    assert scale.relative(scale.uniform) == pytest.approx(0.0)
    assert scale.relative(scale.knn) == pytest.approx(1.0)


def test_hardness_scale_uses_valid_rows_only():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(50, 4)).astype(np.float32)
    valid = np.zeros(50, dtype=bool)
    valid[::2] = True
    masked = hardness_scale(x, 4, np.random.default_rng(0), valid=valid, num_seeds=25)
    alone = hardness_scale(x[valid], 4, np.random.default_rng(0), num_seeds=25)
    assert masked.uniform == pytest.approx(alone.uniform, abs=1e-6)
    assert masked.knn == pytest.approx(alone.knn, abs=1e-6)


def test_degenerate_bank_gives_nan():
    scale = HardnessScale(uniform=0.3, knn=0.3)
    assert math.isnan(scale.relative(0.3))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda x: hardness_scale(x[:1], 4, np.random.default_rng(0)), "at least 2 valid rows"),
        (lambda x: hardness_scale(x, 1, np.random.default_rng(0)), "batch_size"),
        (lambda x: hardness_scale(x[:, 0], 4, np.random.default_rng(0)), "2-D"),
        (lambda x: hardness_scale(x, 4, np.random.default_rng(0), valid=np.ones(3, bool)), "valid"),
        (lambda x: hardness_scale(x, 4, np.random.default_rng(0), num_seeds=0), "num_seeds"),
    ],
)
def test_hardness_scale_rejects_bad_input(call, message):
    x = np.random.default_rng(0).normal(size=(10, 3)).astype(np.float32)
    with pytest.raises(ValueError, match=message):
        call(x)


# ---------------------------------------------------------------------- the search


def test_ladder_is_ordered_and_invertible():
    ladder = HardnessLadder(k=100, max_m=4000, min_k=16)
    positions = np.linspace(0, ladder.length, 60)
    settings = [ladder.settings(p) for p in positions]
    ks, ms = np.array([s[0] for s in settings]), np.array([s[1] for s in settings])
    assert settings[0] == (100, 100) and settings[-1] == (16, 4000)
    assert (np.diff(ms) >= 0).all() and (np.diff(ks) <= 0).all()
    assert ladder.settings(1.0) == (100, 4000)
    for k, m in [(100, 100), (100, 1000), (100, 4000), (50, 4000), (25, 4000)]:
        assert ladder.settings(ladder.position(k, m)) == (k, m)


@pytest.mark.parametrize("target", [0.0, 0.2, 0.5, 0.9, 1.0])
def test_search_finds_a_monotone_target(target):
    ladder = HardnessLadder(k=100, max_m=4000, min_k=16)
    calls = []

    def evaluate(k, m):
        calls.append((k, m))
        return ladder.position(k, m) / ladder.length

    found = search_hardness(evaluate, ladder, target, 0.1, start=ladder.position(100, 1000), max_evaluations=8)
    assert abs(found.relative_hardness - target) <= 0.05
    assert len(found.tried) == len(calls) <= 8
    assert (found.k, found.m) == (found.tried[-1]["k"], found.tried[-1]["m"])


def test_search_respects_its_budget_and_keeps_the_closest():
    ladder = HardnessLadder(k=10, max_m=1000, min_k=10)
    values = iter([0.1, 0.2, 0.35, 0.3, 0.9])
    found = search_hardness(lambda k, m: next(values), ladder, 0.8, 0.1, start=0.5, max_evaluations=4)
    assert len(found.tried) == 4
    assert found.relative_hardness == 0.35


def test_search_stops_on_nan_and_when_settings_repeat():
    ladder = HardnessLadder(k=3, max_m=4, min_k=3)  # only m = 3 and m = 4 exist
    found = search_hardness(lambda k, m: float("nan"), ladder, 0.5, 0.1, start=0.0, max_evaluations=5)
    assert len(found.tried) == 1
    found = search_hardness(lambda k, m: 0.0, ladder, 0.5, 0.1, start=0.0, max_evaluations=50)
    assert len(found.tried) == 2  # m = 3, then m = 4; every later position maps to one of them
    with pytest.raises(ValueError, match="max_evaluations"):
        search_hardness(lambda k, m: 0.0, ladder, 0.5, 0.1, start=0.0, max_evaluations=0)


# ---------------------------------------------------------------------- guided re-seeds


def _clustered(n_clusters=40, size=16, dim=8, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_clusters, dim))
    x = np.repeat(centres, size, axis=0) + 0.05 * rng.normal(size=(n_clusters * size, dim))
    return x.astype(np.float32)


def test_guided_reseeds_keep_the_epoch_a_partition_and_late_batches_hard():
    x = _clustered()
    n = x.shape[0]
    # A sparse random graph: walks stall often, so re-seeds decide late batches.
    graph = ProximityGraph.build(x, 2, 2, seed=0)
    late = {}
    for candidates in (0, 64):
        values = []
        for seed in range(3):
            used = np.zeros(n, dtype=bool)
            rng = np.random.default_rng(seed)
            batches = []
            for _ in range(n // 16 // 8):
                batches += grow_batches(graph, used, [16] * 8, 0.2, rng, max_fruitless_steps=4,
                                        vectors=x, reseed_candidates=candidates)
            flat = np.concatenate(batches)
            assert np.array_equal(np.sort(flat), np.arange(n))
            values.append(mean_pair_similarity(x, batches[-len(batches) // 4 :]))
        late[candidates] = np.mean(values)
    assert late[64] > late[0] + 0.2, late


def test_guided_reseeds_need_vectors():
    graph = ProximityGraph.build(_clustered(), 2, 2, seed=0)
    used = np.zeros(graph.num_nodes, dtype=bool)
    with pytest.raises(ValueError, match="needs vectors"):
        grow_batches(graph, used, [16], 0.2, np.random.default_rng(0), reseed_candidates=4)
    with pytest.raises(ValueError, match="vectors must have shape"):
        grow_batches(graph, used, [16], 0.2, np.random.default_rng(0), reseed_candidates=4,
                     vectors=np.zeros((3, 2), np.float32))
    with pytest.raises(ValueError, match="reseed_candidates"):
        grow_batches(graph, used, [16], 0.2, np.random.default_rng(0), reseed_candidates=-1)
    assert not used.any()


# ---------------------------------------------------------------------- the sampler


@pytest.mark.parametrize("target", [0.25, 0.5])
def test_target_hardness_is_held_on_the_digits(digits, target):
    sampler = BatchSampler(len(digits), 64, seed=0, embeddings=digits, target_hardness=target)
    for _ in range(3):
        batches = list(sampler)
        flat = np.concatenate(batches)
        assert np.array_equal(np.sort(flat), np.arange(len(digits)))
    list(iter(sampler))  # starting epoch 3 records epoch 2
    assert [r["epoch"] for r in sampler.hardness_history] == [0, 1, 2]
    for record in sampler.hardness_history:
        assert abs(record["relative_hardness"] - target) <= 0.1, record
        assert len(record["by_part"]) == 4
    stats = sampler.refresh_stats
    assert abs(stats.relative_hardness - target) <= 0.05 or stats.calibration_builds == 5
    assert (stats.k, stats.m) == (sampler.graph.build_params["k"], sampler.graph.build_params["m"])


def test_target_hardness_orders_batches(digits):
    measured = {}
    for target in (0.0, 0.5):
        sampler = BatchSampler(len(digits), 64, seed=1, embeddings=digits, target_hardness=target)
        list(sampler)
        measured[target] = sampler.measure_epoch_hardness()["relative_hardness"]
    assert measured[0.0] < 0.1 and measured[0.5] > 0.4, measured


def test_calibrated_graph_is_the_plain_build_of_the_chosen_setting(digits):
    sampler = BatchSampler(len(digits), 64, seed=3, embeddings=digits, target_hardness=0.5)
    twin = BatchSampler(len(digits), 64, seed=3, embeddings=digits, target_hardness=0.5)
    assert [list(b) for b in sampler] == [list(b) for b in twin]
    k, m = sampler.refresh_stats.k, sampler.refresh_stats.m
    plain = BatchSampler(len(digits), 64, seed=3, k=k, m=m)
    plain.update(np.arange(len(digits)), digits)
    plain.refresh()
    assert np.array_equal(plain.graph.indices, sampler.graph.indices)


def test_target_hardness_state_round_trips(digits, tmp_path):
    sampler = BatchSampler(len(digits), 64, seed=0, embeddings=digits, target_hardness=0.5)
    list(sampler)
    list(iter(sampler))
    path = sampler.save(tmp_path / "ckpt")
    state = sampler.state_dict()
    restored = BatchSampler(len(digits), 64, seed=0, target_hardness=0.5)
    restored.load(path)
    restored.load_state_dict(state)
    assert restored.hardness_history == sampler.hardness_history
    assert restored._hardness_position == sampler._hardness_position
    assert restored.refresh_stats.m == sampler.refresh_stats.m
    # What the rest of an epoch adds travels with the graph: a resumed epoch chooses as before.
    assert restored.graph.build_params["hardness"]["rest_similarity"] == sampler.graph.build_params["hardness"][
        "rest_similarity"]
    assert list(restored) == []  # the state was taken at an epoch's end: that iterator ends it
    assert [list(batch) for batch in restored] == [list(batch) for batch in sampler]
    bad = dict(state, hardness_position=-1.0)
    before = restored.state_dict()
    with pytest.raises(ValueError, match="hardness_position"):
        restored.load_state_dict(bad)
    assert restored.state_dict() == before


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"target_hardness": 1.5}, ValueError, "target_hardness"),
        ({"target_hardness": 0.5, "backend": "exact"}, ValueError, "backend='random'"),
        ({"hardness_tolerance": 0.0}, ValueError, "hardness_tolerance"),
        ({"hardness_tolerance": True}, ValueError, "hardness_tolerance"),
        ({"calibration_builds": 0}, ValueError, "calibration_builds"),
        ({"reseed_candidates": -1}, ValueError, "reseed_candidates"),
        ({"reseed_candidates": 2.5}, TypeError, "reseed_candidates"),
    ],
)
def test_bad_hardness_settings_are_rejected(kwargs, error, message):
    with pytest.raises(error, match=message):
        BatchSampler(100, 10, k=5, m=20, **kwargs)


def test_candidate_walks_default_follows_the_target_and_the_epoch_length():
    assert BatchSampler(100, 10, k=5, m=20).candidate_walks == 1
    assert BatchSampler(100, 10, k=5, m=20, target_hardness=0.3).candidate_walks == 8  # 10 batches
    assert BatchSampler(10_000, 39, k=5, m=20, target_hardness=0.3).candidate_walks == 1  # 257 batches
    assert BatchSampler(10_000, 64, k=5, m=20, target_hardness=0.3).candidate_walks == 2  # 157 batches
    assert BatchSampler(100, 10, k=5, m=20, target_hardness=0.3, candidate_walks=3).candidate_walks == 3


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"candidate_walks": 2}, ValueError, "target_hardness"),
        ({"candidate_walks": 0, "target_hardness": 0.5}, ValueError, "candidate_walks"),
        ({"candidate_walks": 1.5, "target_hardness": 0.5}, TypeError, "candidate_walks"),
        ({"max_candidate_walks": 2}, ValueError, "^max_candidate_walks > 1 chooses walks by target_hardness"),
        ({"max_candidate_walks": 0, "target_hardness": 0.5}, ValueError, "^max_candidate_walks"),
        ({"max_candidate_walks": 2.0, "target_hardness": 0.5}, TypeError, "^max_candidate_walks"),
        ({"max_candidate_walks": 2, "candidate_walks": 3, "target_hardness": 0.5}, ValueError,
         r"^max_candidate_walks must be >= candidate_walks \(3\)"),
        ({"max_candidate_walks": 4, "target_hardness": 0.5}, ValueError,  # the default is 8 for 10 batches
         r"^max_candidate_walks must be >= candidate_walks \(8, the default for 10 batches an epoch\)"),
    ],
)
def test_bad_candidate_walks_are_rejected(kwargs, error, message):
    with pytest.raises(error, match=message):
        BatchSampler(100, 10, k=5, m=20, **kwargs)


@pytest.mark.parametrize("replacement", [False, True], ids=["exactly_once", "replacement"])
def test_candidate_walks_hold_every_short_epoch_close_to_the_target(digits, replacement):
    """29 batches per epoch: one walk per group lands anywhere in the epoch's spread around the
    calibrated mean; the default 8 candidates keep every epoch close to the target. Candidates
    choose by the epoch as walked (on the calibration's references); the measured epoch also
    carries the noise of references measured afresh (about 0.01 here), which no choice removes."""
    target = 0.5
    measured, walked = {}, {}
    for walks in (1, None):
        values, planned = [], []
        for seed in range(3):
            sampler = BatchSampler(len(digits), 64, seed=seed, embeddings=digits, target_hardness=target,
                                   candidate_walks=walks, replacement=replacement)
            for _ in range(2):
                batches = list(sampler)
                if replacement:
                    assert all(len(set(batch)) == len(batch) == 64 for batch in batches)
                else:
                    assert np.array_equal(np.sort(np.concatenate(batches)), np.arange(len(digits)))
            list(iter(sampler))
            values += [record["relative_hardness"] for record in sampler.hardness_history]
            planned += [record["planned_hardness"] for record in sampler.hardness_history]
        measured[walks] = np.abs(np.asarray(values) - target)
        walked[walks] = np.abs(np.asarray(planned) - target)
    assert sampler.candidate_walks == 8
    assert measured[None].max() <= 0.05, measured
    assert walked[None].max() <= 0.02, walked
    assert walked[None].mean() < 0.4 * walked[1].mean(), walked


def test_a_sampler_without_a_target_never_measures_the_references(digits, monkeypatch):
    """The references cost a kNN search over the bank: only candidate walks need them."""
    import batchsampler._hardness_target as target_module

    sampler = BatchSampler(len(digits), 64, seed=0, embeddings=digits)

    def refuse(*args, **kwargs):
        raise AssertionError("hardness_scale measured without a target_hardness")

    monkeypatch.setattr(target_module, "hardness_scale", refuse)
    batches = list(sampler)
    assert np.array_equal(np.sort(np.concatenate(batches)), np.arange(len(digits)))


def test_candidate_walks_count_what_the_rest_of_the_epoch_adds(digits):
    """57 batches in 4 groups: choosing each group for the epoch so far alone left every epoch
    as walked about 0.03 under the target (an early group took the target for itself, and the
    leftovers after it are easier); counting what the later batches are expected to add
    centres the epochs."""
    target, deviations = 0.5, []
    for seed in range(3):
        sampler = BatchSampler(len(digits), 32, seed=seed, embeddings=digits, target_hardness=target)
        for _ in range(3):
            list(sampler)
            deviations.append(sampler.planned_hardness - target)
    assert sampler.candidate_walks == 5
    assert abs(np.mean(deviations)) < 0.01, deviations
    assert np.abs(deviations).max() <= 0.02, deviations
    # Expected from the calibration's simulated epoch, stored with the graph: entry i is what
    # batches i.. add; the pair counts of an exactly-once epoch are exact (56 x 32 rows + 5).
    hardness = sampler.graph.build_params["hardness"]
    sizes = [32] * 56 + [5]
    assert hardness["rest_pairs"] == [float(sum(b * (b - 1) for b in sizes[i:])) for i in range(len(sizes) + 1)]
    assert len(hardness["rest_similarity"]) == len(sampler) + 1 and hardness["rest_similarity"][-1] == 0
    # Batches with replacement are alike wherever they fall: each is chosen for the epoch so far.
    independent = BatchSampler(len(digits), 32, seed=0, embeddings=digits, target_hardness=target, replacement=True)
    assert "rest_pairs" not in independent.graph.build_params["hardness"]


def test_candidate_walks_are_deterministic_and_one_walk_is_the_plain_walk(digits):
    def sampler_of(**kwargs):
        return BatchSampler(len(digits), 64, seed=4, embeddings=digits, **kwargs)

    def epochs(sampler):
        return [[list(batch) for batch in sampler] for _ in range(2)]

    chosen = sampler_of(target_hardness=0.5)
    assert epochs(chosen) == epochs(sampler_of(target_hardness=0.5))
    one = sampler_of(target_hardness=0.5, candidate_walks=1)
    # Candidate 0 is the walk's own stream: one candidate walks as a sampler without a target
    # does on the same graph (the calibrated graph is the plain build of its k and m).
    k, m = one.refresh_stats.k, one.refresh_stats.m
    plain = sampler_of(k=k, m=m, reseed_candidates=32)
    assert np.array_equal(plain.graph.indices, one.graph.indices)
    assert epochs(one) == epochs(plain)
    assert epochs(one) != epochs(chosen)


def test_reseed_candidates_default_follows_the_target():
    assert BatchSampler(100, 10, k=5, m=20).reseed_candidates == 0
    assert BatchSampler(100, 10, k=5, m=20, target_hardness=0.3).reseed_candidates == 32


def test_target_hardness_with_persistent_workers_matches_the_sampler_alone(digits):
    """torch's DataLoader with 2 persistent workers (it calls iter(batch_sampler) twice per
    epoch): the same batches as the sampler iterated by hand, epochs partitioned, and the
    target held, with a search at every refresh and candidate walks."""
    import torch
    from torch.utils.data import DataLoader

    n = len(digits)
    bank = torch.from_numpy(digits)

    def run(loader_of):
        sampler = BatchSampler(n, 64, seed=2, target_hardness=0.3, warmup_epochs=1)
        epochs = []
        source = loader_of(sampler)
        for _ in range(4):
            batches = []
            for batch in source:
                batch = torch.as_tensor(batch)
                batches.append(batch.tolist())
                sampler.update(batch, bank[batch])
            sampler.refresh()
            epochs.append(batches)
        list(iter(sampler))
        return sampler, epochs

    sampler, loaded = run(lambda s: DataLoader(range(n), batch_sampler=s, num_workers=2, persistent_workers=True))
    _, by_hand = run(lambda s: s)
    assert loaded == by_hand
    for epoch in loaded:
        assert np.array_equal(np.sort(np.concatenate(epoch)), np.arange(n))
    history = sampler.hardness_history
    assert [(r["epoch"], r["graph_version"] > 0) for r in history] == [(0, False), (1, True), (2, True), (3, True)]
    assert abs(history[0]["relative_hardness"]) <= 0.1  # the uniform warm-up epoch
    assert all(abs(r["relative_hardness"] - 0.3) <= 0.1 for r in history[1:]), history


@pytest.mark.parametrize("workers", [0, 2], ids=["workers0", "workers2"])
def test_target_hardness_in_a_real_loader_with_refreshes_and_a_mid_epoch_resume(digits, workers, tmp_path):
    """Refreshes every 10 batches, each a search: the loader's stream is the sampler's own, every
    epoch a partition, and a run resumed mid-epoch (sampler checkpoint + StatefulDataLoader
    state) continues it exactly."""
    import torch
    from torchdata.stateful_dataloader import StatefulDataLoader

    n = len(digits)
    bank = torch.from_numpy(digits)

    def make():
        sampler = BatchSampler(n, 64, seed=5, target_hardness=0.4, refresh_every=10, warmup_epochs=1, swap_delay=2)
        return sampler, StatefulDataLoader(range(n), batch_sampler=sampler, num_workers=workers)

    def epoch_of(sampler, loader, stop_at=None):
        batches = []
        for step, batch in enumerate(loader):
            batches.append(batch.tolist())
            sampler.update(batch, bank[batch])
            if step == stop_at:
                sampler.save(tmp_path / "ckpt")
                return batches, loader.state_dict()
        return batches, None

    sampler, loader = make()
    full = [epoch_of(sampler, loader)[0] for _ in range(3)]
    for epoch in full:
        assert np.array_equal(np.sort(np.concatenate(epoch)), np.arange(n))
    assert sampler.refresh_stats.builds >= 4 and sampler.hardness_history
    sampler, loader = make()
    epoch_of(sampler, loader)
    epoch_of(sampler, loader)
    head, state = epoch_of(sampler, loader, stop_at=11)
    resumed, loader = make()
    resumed.load(tmp_path / "ckpt")
    loader.load_state_dict(state)
    rest = epoch_of(resumed, loader)[0]
    assert head + rest == full[2]


# ---------------------------------------------------------------------- drift correction


def _drifting_run(digits, drift_epochs, seed, *, push=0.15, epochs=6):
    """Epochs on a bank that training moves: after each epoch every batch it walked is pulled
    apart (its members lose part of their mean direction), as a contrastive loss does to the
    batches it trains on, so each epoch measures easier than it was walked."""
    unit = digits / np.linalg.norm(digits, axis=1, keepdims=True)
    sampler = BatchSampler(len(digits), 64, seed=seed, embeddings=digits, target_hardness=0.5,
                           drift_epochs=drift_epochs)
    for _ in range(epochs):
        batches = list(sampler)
        assert sampler.planned_hardness is not None
        trained = unit.copy()
        for batch in batches:
            trained[batch] = unit[batch] - push * unit[batch].mean(axis=0)
        sampler.update(np.arange(len(digits)), trained)
        sampler.refresh()
    list(iter(sampler))
    return sampler


def test_drift_correction_lands_the_measured_epochs_on_the_target(digits):
    deviations, drifts = {}, {}
    for drift_epochs in (0, 3):
        records = [r for seed in (0, 1) for r in _drifting_run(digits, drift_epochs, seed).hardness_history[2:]]
        deviations[drift_epochs] = np.array([abs(r["relative_hardness"] - 0.5) for r in records])
        drifts[drift_epochs] = np.array([r["planned_hardness"] - r["relative_hardness"] for r in records])
        assert all(r["target_hardness"] == 0.5 for r in records)
    # Without the correction every epoch is walked at the target and measured well below it.
    assert drifts[0].mean() > 0.04 and deviations[0].mean() > 0.05, (drifts, deviations)
    # With it the walk aims above the target by the drift, and the measurement lands on it.
    assert deviations[3].mean() < 0.4 * deviations[0].mean() and deviations[3].max() <= 0.1, deviations


def test_drift_correction_records_and_state(digits):
    assert BatchSampler(len(digits), 64, seed=0, target_hardness=0.5).drift_epochs == 0  # off by default
    sampler = BatchSampler(len(digits), 64, seed=0, embeddings=digits, target_hardness=0.5, drift_epochs=3)
    assert sampler.hardness_aim == 0.5 and sampler.planned_hardness is None
    for _ in range(4):
        list(sampler)
    list(iter(sampler))
    history = sampler.hardness_history
    assert history[0]["aim"] == 0.5
    for record in history:
        # A bank that does not move: the epoch measures as it was walked.
        assert abs(record["planned_hardness"] - record["relative_hardness"]) <= 0.05, record
    expected = 0.5 + np.mean([r["planned_hardness"] - r["relative_hardness"] for r in history[-3:]])
    assert sampler.hardness_aim == pytest.approx(expected)
    assert history[-1]["aim"] == pytest.approx(
        0.5 + np.mean([r["planned_hardness"] - r["relative_hardness"] for r in history[-4:-1]]))

    state = sampler.state_dict()
    restored = BatchSampler(len(digits), 64, seed=0, target_hardness=0.5, drift_epochs=3)
    restored.load_state_dict(state)
    assert restored.hardness_aim == sampler.hardness_aim
    assert restored._hardness_drift == sampler._hardness_drift
    before = restored.state_dict()
    for field, value in [("hardness_drift", [math.nan]), ("hardness_aim", 1.5), ("hardness_aim", None),
                         ("planned_hardness", [1.5, 0.2])]:
        with pytest.raises(ValueError, match=field):
            restored.load_state_dict(dict(state, **{field: value}))
        assert restored.state_dict() == before
    plain = BatchSampler(len(digits), 64, seed=0, embeddings=digits)
    list(plain)
    assert plain.hardness_aim is None and plain.planned_hardness is None


@pytest.mark.parametrize(("value", "error"), [(-1, ValueError), (1.5, TypeError), (True, TypeError)])
def test_bad_drift_epochs_are_rejected(value, error):
    with pytest.raises(error, match="drift_epochs"):
        BatchSampler(100, 10, k=5, m=20, target_hardness=0.5, drift_epochs=value)


def _few_large_batches(batch_size=128, **options):
    """188 clustered rows in batches of 128: two batches an epoch (128 and the 60 left), where one
    walk's relative hardness spreads widely (a ratio of two close means), as on MUTAG at B = 128."""
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((6, 16))
    x = (centres[rng.integers(0, 6, 188)] + 0.9 * rng.standard_normal((188, 16))).astype(np.float32)
    return BatchSampler(188, batch_size, k=18, m=94, seed=0, embeddings=x, warmup_epochs=0, background=False, **options)


def _planned_epochs(sampler, epochs):
    planned, batches = [], []
    for _ in range(epochs):
        batches.append(list(sampler))
        planned.append(sampler.planned_hardness)
    return np.array(planned), batches


def test_rescue_walks_land_every_short_epoch_of_large_batches_in_the_bands_inner_half():
    without = _few_large_batches(target_hardness=0.5, max_candidate_walks=8)  # no extra walks
    plain, plain_batches = _planned_epochs(without, 40)
    sampler = _few_large_batches(target_hardness=0.5)
    assert (sampler.candidate_walks, sampler.max_candidate_walks) == (8, 64)  # the default rescue
    rescued, batches = _planned_epochs(sampler, 40)
    half = sampler.hardness_tolerance / 2
    outside = np.abs(plain - 0.5) > half
    assert (np.abs(plain - 0.5) > sampler.hardness_tolerance).sum() >= 3  # the best of 8 walks misses the band
    assert (outside & (np.abs(plain - 0.5) <= sampler.hardness_tolerance)).sum() >= 3  # or lands near its edge
    # Every epoch the 8 candidates leave outside the inner half is walked into it: half the
    # band is left for the drift of the steps that train on the epoch.
    assert (np.abs(rescued[outside] - 0.5) <= half).all()
    # An epoch the 8 candidates land in the inner half is walked as without extra walks.
    assert [b for b, o in zip(batches, outside) if not o] == [b for b, o in zip(plain_batches, outside) if not o]
    assert np.array_equal(rescued[~outside], plain[~outside])
    again, same = _planned_epochs(_few_large_batches(target_hardness=0.5), 40)
    assert same == batches and np.array_equal(again, rescued)  # deterministic
    for epoch in batches:  # still exactly once
        assert sorted(i for batch in epoch for i in batch) == list(range(188))


def test_a_rescued_epoch_resumes_mid_epoch_as_walked():
    plain, plain_batches = _planned_epochs(_few_large_batches(target_hardness=0.5, max_candidate_walks=8), 40)
    rescued_epoch = int(np.flatnonzero(np.abs(plain - 0.5) > 0.1)[0])
    _, expected = _planned_epochs(_few_large_batches(target_hardness=0.5), rescued_epoch + 1)
    assert expected[rescued_epoch] != plain_batches[rescued_epoch]  # the extra walks chose another
    first = _few_large_batches(target_hardness=0.5)
    _planned_epochs(first, rescued_epoch)
    iterator = iter(first)
    head = [next(iterator)]  # the rescued group is grown; one of its two batches is out
    resumed = _few_large_batches(target_hardness=0.5)
    resumed.load_state_dict(first.state_dict())
    assert head + list(resumed) == expected[rescued_epoch]


def test_rescue_walks_only_at_the_epochs_last_choice():
    # Three batches (64, 64, 60), one group each: the second is the epoch's last choice, since the
    # third takes what is left; the groups before and after it walk their candidates only.
    sampler = _few_large_batches(64, target_hardness=0.5, lockstep_batches=1)
    walks_by_group = []
    original = sampler._closest_walk

    def spy(walk, used, stream, positions):
        count = [0]

        def counted(*args):
            count[0] += 1
            return walk(*args)

        result = original(counted, used, stream, positions)
        walks_by_group.append((positions.start, count[0]))
        return result

    sampler._closest_walk = spy
    _planned_epochs(sampler, 30)
    walks = {start: {n for s, n in walks_by_group if s == start} for start in range(3)}
    assert walks[0] == walks[2] == {sampler.candidate_walks}
    assert max(walks[1]) > sampler.candidate_walks  # rescued in some epoch


def test_a_last_choice_of_one_batch_measures_the_leftover_batch_itself():
    # Three batches walked one by one: the last choice is the second batch alone, and the third is
    # what its candidate leaves. Measured from the calibration's estimate of that batch instead,
    # 3 of 30 epochs ended beyond the band as walked, although the rescue thought them inside it.
    sampler = _few_large_batches(64, target_hardness=0.5, lockstep_batches=1)
    planned, epochs = _planned_epochs(sampler, 30)
    assert (np.abs(planned - 0.5) <= sampler.hardness_tolerance / 2).all()
    for epoch in epochs:
        assert sorted(i for batch in epoch for i in batch) == list(range(188))
    # With drop_last the last batch is walked from more than it takes: the estimate stays.
    dropping = _few_large_batches(64, target_hardness=0.5, lockstep_batches=1, drop_last=True)
    _, epochs = _planned_epochs(dropping, 5)
    for epoch in epochs:
        flat = [i for batch in epoch for i in batch]
        assert [len(batch) for batch in epoch] == [64, 64] and len(set(flat)) == 128


def test_rescue_walks_do_not_chase_an_aim_out_of_reach():
    far = _few_large_batches(target_hardness=1.0)
    calibrated = far.graph.build_params["hardness"]["relative_hardness"]
    assert abs(calibrated - 1.0) > far.hardness_tolerance  # the aim is out of the graph's reach
    _, far_plain = _planned_epochs(far, 3)
    _, far_without = _planned_epochs(_few_large_batches(target_hardness=1.0, max_candidate_walks=8), 3)
    assert far_plain == far_without


def test_long_epochs_walk_one_candidate_and_no_rescue():
    sampler = BatchSampler(2000, 4, k=5, m=20, seed=0, target_hardness=0.5, embeddings=np.eye(2000, 8, dtype=np.float32),
                           warmup_epochs=0, background=False)
    assert (sampler.candidate_walks, sampler.max_candidate_walks) == (1, 1)  # 500 batches: nothing to measure
