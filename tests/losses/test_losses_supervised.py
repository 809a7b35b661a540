"""H-SCL / SCL: official per-pair reference, label identities, edge cases."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from batchsampler.losses import (
    HardNegativeContrastiveLoss,
    HardSupervisedContrastiveLoss,
    NTXentLoss,
)

HYP = settings(max_examples=15, deadline=None)
SEEDS = st.integers(0, 2**31 - 1)


def _labels(batch: int, classes: int, seed: int) -> torch.Tensor:
    return torch.randint(0, classes, (batch,), generator=torch.Generator().manual_seed(seed))


@HYP
@given(
    batch=st.integers(2, 7),
    classes=st.integers(2, 4),
    beta=st.sampled_from([0.0, 0.5, 1.0, 2.0]),
    t=st.sampled_from([0.5, 0.2]),
    seed=SEEDS,
)
def test_matches_official_reference(ref, batch, classes, beta, t, seed):
    z1, z2 = ref.make_views(batch, 5, seed)
    y = _labels(batch, classes, seed)
    if (y == y[0]).all():  # single class: nothing to compare (see dedicated test)
        y[0] = y[0] + 1
    ref.assert_same(
        lambda a, b: HardSupervisedContrastiveLoss(t, beta)(a, b, labels=y),
        lambda a, b: ref.official_hscl(a, b, y, t, beta),
        z1,
        z2,
    )


def test_beta_zero_is_scl(ref):
    # SCL = plain mean over the other-class samples (official nce_supervised_easy)
    z1, z2 = ref.make_views(6, 5, 51)
    y = torch.tensor([0, 1, 0, 2, 1, 0])
    ref.assert_same(
        lambda a, b: HardSupervisedContrastiveLoss(0.5, beta=0.0)(a, b, labels=y),
        lambda a, b: ref.official_hscl(a, b, y, 0.5, 0.0),
        z1,
        z2,
    )
    # and beta > 0 really differs from SCL
    hard = HardSupervisedContrastiveLoss(0.5, beta=1.0)(z1, z2, labels=y)
    assert not torch.allclose(hard, HardSupervisedContrastiveLoss(0.5, beta=0.0)(z1, z2, labels=y))


@HYP
@given(batch=st.integers(2, 7), t=st.sampled_from([0.5, 0.2, 0.1]), seed=SEEDS)
def test_distinct_labels_scl_is_ntxent(ref, batch, t, seed):
    z1, z2 = ref.make_views(batch, 5, seed)
    y = torch.randperm(batch, generator=torch.Generator().manual_seed(seed)) * 3
    ref.assert_same(lambda a, b: HardSupervisedContrastiveLoss(t, beta=0.0)(a, b, labels=y), NTXentLoss(t), z1, z2)


@HYP
@given(batch=st.integers(2, 7), beta=st.sampled_from([0.5, 1.0, 2.0]), seed=SEEDS)
def test_distinct_labels_hscl_is_hcl_tau_plus_zero(ref, batch, beta, seed):
    z1, z2 = ref.make_views(batch, 5, seed)
    y = torch.arange(batch)
    ref.assert_same(
        lambda a, b: HardSupervisedContrastiveLoss(0.5, beta=beta)(a, b, labels=y),
        HardNegativeContrastiveLoss(0.5, tau_plus=0.0, beta=beta),
        z1,
        z2,
    )


def test_distinct_labels_identity_holds_under_neg_mask(ref):
    z1, z2 = ref.make_views(5, 4, 52)
    mask = torch.rand(10, 10, generator=torch.Generator().manual_seed(53)) < 0.5
    y = torch.arange(5)
    ref.assert_same(
        lambda a, b: HardSupervisedContrastiveLoss(0.5, 1.0)(a, b, labels=y, neg_mask=mask),
        lambda a, b: HardNegativeContrastiveLoss(0.5, 0.0, 1.0)(a, b, neg_mask=mask),
        z1,
        z2,
    )


def test_neg_mask_matches_reference(ref):
    z1, z2 = ref.make_views(6, 4, 54)
    y = torch.tensor([0, 1, 0, 2, 1, 2])
    mask = torch.rand(12, 12, generator=torch.Generator().manual_seed(55)) < 0.6
    ref.assert_same(
        lambda a, b: HardSupervisedContrastiveLoss(0.5, 1.0)(a, b, labels=y, neg_mask=mask),
        lambda a, b: ref.official_hscl(a, b, y, 0.5, 1.0, neg_mask=mask),
        z1,
        z2,
    )


def test_detached_weights_match_reference_and_change_gradient(ref):
    z1, z2 = ref.make_views(6, 4, 56)
    y = torch.tensor([0, 1, 0, 2, 1, 2])
    detached = lambda a, b: HardSupervisedContrastiveLoss(0.5, 0.5, detach_weights=True)(a, b, labels=y)  # noqa: E731
    attached = lambda a, b: HardSupervisedContrastiveLoss(0.5, 0.5)(a, b, labels=y)  # noqa: E731
    ref.assert_same(detached, lambda a, b: ref.official_hscl(a, b, y, 0.5, 0.5, detach=True), z1, z2)
    _, gd, _ = ref.value_and_grads(detached, z1, z2)
    _, ga, _ = ref.value_and_grads(attached, z1, z2)
    assert (gd - ga).abs().max() > 1e-4


def test_single_class_batch_is_skipped_not_nan(ref):
    z1, z2 = ref.make_views(4, 3, 57)
    loss = HardSupervisedContrastiveLoss(0.5, 1.0)
    out = loss(z1, z2, labels=torch.zeros(4, dtype=torch.long))
    g1, g2 = torch.autograd.grad(out, (z1, z2))
    assert out.item() == 0.0 and torch.isfinite(g1).all() and torch.isfinite(g2).all()
    assert loss.last_diagnostics["num_pairs"].item() == 0


def test_per_pair_reduction_layout(ref):
    z1, z2 = ref.make_views(4, 3, 58)
    y = torch.tensor([0, 0, 1, 2])
    per = HardSupervisedContrastiveLoss(0.5, 1.0, reduction="none")(z1, z2, labels=y)
    assert per.shape == (8, 8)
    y2 = torch.cat([y, y])
    pairs = (y2[:, None] == y2[None, :]) & ~torch.eye(8, dtype=torch.bool)
    assert ((per > 0) == pairs).all()
    mean = HardSupervisedContrastiveLoss(0.5, 1.0)(z1, z2, labels=y)
    torch.testing.assert_close(mean, per.sum() / pairs.sum())


def test_labels_moved_to_embedding_device_and_integer_required(ref):
    z1, z2 = ref.make_views(4, 3, 59)
    with pytest.raises(TypeError, match="labels must have an integer dtype"):
        HardSupervisedContrastiveLoss()(z1, z2, labels=torch.zeros(4, dtype=torch.bool))
    with pytest.raises(ValueError, match="labels must have shape"):
        HardSupervisedContrastiveLoss()(z1, z2, labels=torch.zeros(4, 1, dtype=torch.long))
