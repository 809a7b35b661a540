"""Bank spaces and per-run sampler settings shared by the vision, graph and text integrations."""

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from batchsampler.integrations._arms import (
    BANK_SPACES,
    arm_key,
    arm_label,
    bank_rows,
    check_bank,
    check_run_options,
    sampler_extras,
)


def _views(seed=0, rows=5, p=3, f=4):
    generator = torch.Generator().manual_seed(seed)
    z = [torch.randn(rows, p, generator=generator, requires_grad=True) for _ in range(2)]
    h = [torch.randn(rows, f, generator=generator) * 7 for _ in range(2)]
    return z, h


def test_projection_rows_are_the_normalised_projections_of_both_views():
    (z1, z2), h = _views()
    rows = bank_rows("projection", (z1, z2), h)
    # The expression the integrations used before the bank setting existed.
    assert torch.equal(rows, torch.cat([F.normalize(z1.detach(), dim=1), F.normalize(z2.detach(), dim=1)], dim=1))
    assert not rows.requires_grad


def test_backbone_rows_are_the_normalised_features_of_both_views():
    z, (h1, h2) = _views()
    rows = bank_rows("backbone", z, (h1, h2))
    assert rows.shape == (5, 8)
    assert torch.allclose(rows[:, :4], h1 / h1.norm(dim=1, keepdim=True))
    assert torch.allclose(rows[:, 4:], h2 / h2.norm(dim=1, keepdim=True))


def test_both_concatenates_the_two_spaces_scaled_to_unit_views():
    z, h = _views()
    rows = bank_rows("both", z, h)
    projection, backbone = bank_rows("projection", z, h), bank_rows("backbone", z, h)
    assert rows.shape == (5, 6 + 8)
    assert torch.allclose(rows, torch.cat([projection, backbone], dim=1) / math.sqrt(2))
    # Per view, the projection and backbone parts together are unit length; the row has the
    # norm of the one-space rows (two unit views).
    view1 = torch.cat([rows[:, :3], rows[:, 6:10]], dim=1)
    view2 = torch.cat([rows[:, 3:6], rows[:, 10:]], dim=1)
    assert torch.allclose(view1.norm(dim=1), torch.ones(5)) and torch.allclose(view2.norm(dim=1), torch.ones(5))
    assert torch.allclose(rows.norm(dim=1), projection.norm(dim=1))
    # Cosine similarity in the joint space is the mean of the two spaces'.
    cos = F.normalize(rows, dim=1) @ F.normalize(rows, dim=1).T
    mean = (F.normalize(projection, dim=1) @ F.normalize(projection, dim=1).T
            + F.normalize(backbone, dim=1) @ F.normalize(backbone, dim=1).T) / 2
    assert torch.allclose(cos, mean, atol=1e-6)


def test_bad_bank_is_refused():
    z, h = _views()
    assert check_bank("backbone") == "backbone" and BANK_SPACES == ("projection", "backbone", "both", "encoded")
    with pytest.raises(ValueError, match="no per-step rows"):
        bank_rows("encoded", z, h)
    for bad in ("Projection", "head", None, 1):
        with pytest.raises(ValueError, match="bank must be one of"):
            bank_rows(bad, z, h)
    with pytest.raises(ValueError, match="config.bank"):
        check_bank("encoder", "config.bank")
    with pytest.raises(ValueError, match="same views"):
        bank_rows("projection", z, h[:1])


def _config(**settings):
    return SimpleNamespace(**{"sampler": "batchsampler", "bank": "projection", "target_hardness": None,
                              "replacement": False, **settings})


def test_run_options_are_checked_and_reach_only_the_samplers_that_take_them():
    check_run_options(_config(target_hardness=0.3, replacement=True, bank="both"))
    assert sampler_extras(_config()) == {"replacement": False}
    assert sampler_extras(_config(target_hardness=0.25, replacement=True)) == {
        "replacement": True, "target_hardness": 0.25, "drift_epochs": 0}
    assert sampler_extras(_config(target_hardness=0.25, drift_epochs=3))["drift_epochs"] == 3
    assert "drift_epochs" not in sampler_extras(_config(drift_epochs=3))  # no target, nothing to correct
    with pytest.raises(ValueError, match="config.drift_epochs"):
        check_run_options(_config(drift_epochs=-1))
    with pytest.raises(TypeError, match="config.drift_epochs"):
        check_run_options(_config(drift_epochs=1.0))
    with pytest.raises(ValueError, match="config.bank"):
        check_run_options(_config(bank="head"))
    with pytest.raises(ValueError, match="config.target_hardness.*'batchsampler' sampler only"):
        check_run_options(_config(sampler="uniform", target_hardness=0.3))
    for bad in (float("nan"), -0.1, 1.5):
        with pytest.raises(ValueError, match=r"config.target_hardness must be in \[0, 1\]"):
            check_run_options(_config(target_hardness=bad))
    with pytest.raises(TypeError, match="config.target_hardness"):
        check_run_options(_config(target_hardness="0.3"))
    with pytest.raises(TypeError, match="config.replacement"):
        check_run_options(_config(replacement=1))
    text = SimpleNamespace(sampler="knn", target_hardness=None, replacement=True)  # no bank field
    check_run_options(text)
    assert sampler_extras(_config(target_hardness=0.5, max_candidate_walks=64))["max_candidate_walks"] == 64
    assert "max_candidate_walks" not in sampler_extras(_config(target_hardness=0.5, max_candidate_walks=None))
    with pytest.raises(ValueError, match="config.max_candidate_walks is an option of a target"):
        check_run_options(_config(max_candidate_walks=64))  # it would be dropped without a target


def test_arms_differ_by_their_settings_and_old_records_read_as_defaults():
    old = {"sampler": "batchsampler", "loss": "ntxent"}
    default = {**old, "bank": "projection", "target_hardness": None, "replacement": False}
    assert arm_key(old) == arm_key(default) == ("batchsampler", "projection", None, False, None, None, 0, 1, None)
    assert arm_label(old) == arm_label(default) == "batchsampler"
    assert arm_label({**default, "bank": "backbone"}) == "batchsampler (bank=backbone)"
    assert arm_label({**default, "bank": "both", "target_hardness": 0.3, "replacement": True}) == \
        "batchsampler (bank=both, target=0.3, replacement)"
    labels = {arm_label({**default, **change}) for change in
              ({}, {"bank": "backbone"}, {"target_hardness": 0.1}, {"target_hardness": 0.2}, {"replacement": True},
               {"k": 8}, {"k": 8, "m": 64}, {"target_hardness": 0.1, "drift_epochs": 3}, {"warmup_epochs": 2},
               {"target_hardness": 0.1, "max_candidate_walks": 64})}
    assert len(labels) == 10
    assert arm_label({**default, "target_hardness": 0.5, "max_candidate_walks": 64}) == \
        "batchsampler (target=0.5, max_walks=64)"
    assert arm_label({**default, "warmup_epochs": 1}) == "batchsampler"  # the default, as old records read
    assert arm_label({**default, "target_hardness": 0.5, "warmup_epochs": 2}) == "batchsampler (target=0.5, warmup=2)"
    assert arm_label({**default, "target_hardness": 0.5, "drift_epochs": 3}) == "batchsampler (target=0.5, drift=3)"
    assert arm_label({**default, "k": 8}) == "batchsampler (k=8)"


def test_epoch_hardness_puts_batches_on_the_relative_scale():
    import numpy as np
    from batchsampler.integrations._arms import epoch_hardness

    from batchsampler import BatchSampler, UniformBatchSampler

    rng = np.random.default_rng(0)
    bank = (np.repeat(rng.normal(size=(12, 6)), 20, axis=0) + 0.05 * rng.normal(size=(240, 6))).astype(np.float32)
    uniform = UniformBatchSampler(240, 20, seed=0)
    fields = epoch_hardness(uniform, list(uniform), bank)
    assert abs(fields["relative_hardness"]) < 0.1 and fields["graph_k"] is None
    walked = BatchSampler(240, 20, k=10, m=239, seed=0, embeddings=bank)
    fields = epoch_hardness(walked, list(walked), bank)
    assert fields["relative_hardness"] > 0.5 and (fields["graph_k"], fields["graph_m"]) == (10, 239)
    assert len(fields["relative_by_quarter"]) == 4
    assert epoch_hardness(walked, [], bank)["relative_hardness"] is None
    assert epoch_hardness(walked, list(walked), None)["relative_hardness"] is None
    assert fields["planned_hardness"] is None and fields["hardness_aim"] is None  # no target
    held = BatchSampler(240, 20, k=10, m=239, seed=0, embeddings=bank, target_hardness=0.5)
    fields = epoch_hardness(held, list(held), bank)
    assert fields["hardness_aim"] == 0.5
    # Measured on the bank the walk used, the epoch is as planned.
    assert fields["planned_hardness"] == pytest.approx(fields["relative_hardness"], abs=0.05)
