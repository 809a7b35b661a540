"""DCL: spec section 9 identities and the official exp-space reference."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from batchsampler.losses import DebiasedContrastiveLoss, NTXentLoss

HYP = settings(max_examples=20, deadline=None)


@HYP
@given(
    batch=st.integers(2, 7),
    dim=st.integers(2, 6),
    t=st.sampled_from([0.5, 0.2, 0.1]),
    seed=st.integers(0, 2**31 - 1),
)
def test_tau_plus_zero_is_ntxent(ref, batch, dim, t, seed):
    z1, z2 = ref.make_views(batch, dim, seed)
    ref.assert_same(DebiasedContrastiveLoss(temperature=t, tau_plus=0.0), NTXentLoss(temperature=t), z1, z2)


@HYP
@given(
    batch=st.integers(2, 7),
    t=st.sampled_from([0.5, 0.2, 0.1]),
    tau_plus=st.sampled_from([0.0, 0.05, 0.1, 0.3]),
    seed=st.integers(0, 2**31 - 1),
)
def test_stable_form_matches_official_exp_space(ref, batch, t, tau_plus, seed):
    z1, z2 = ref.make_views(batch, 5, seed)
    ref.assert_same(
        DebiasedContrastiveLoss(temperature=t, tau_plus=tau_plus),
        lambda a, b: ref.official_dcl(a, b, t, tau_plus),
        z1,
        z2,
    )


def test_debiasing_lowers_the_negative_term(ref):
    # for fixed embeddings, subtracting tau+ N pos from the mass can only lower the loss
    z1, z2 = ref.make_views(6, 8, 21, noise=0.3)
    values = [DebiasedContrastiveLoss(0.5, tau)(z1, z2).item() for tau in (0.0, 0.05, 0.1)]
    assert values[0] > values[1] > values[2]


def test_clamp_binds_and_is_reported(ref):
    # perfectly aligned positives with a large tau+ drive the estimate below N e^{-1/t}
    z1, _ = ref.make_views(6, 16, 22)
    z2 = z1.detach().clone().requires_grad_()
    t, tau = 0.5, 0.5
    loss = DebiasedContrastiveLoss(temperature=t, tau_plus=tau)
    ref.assert_same(loss, lambda a, b: ref.official_dcl(a, b, t, tau), z1, z2)
    assert loss.last_diagnostics["clamp_rate"].item() == 1.0
    # clamped: Ng = N e^{-1/t}, positives have similarity 1
    n = 10
    expected = math.log(math.exp(1 / t) + n * math.exp(-1 / t)) - 1 / t
    assert loss(z1, z2).item() == pytest.approx(expected, rel=1e-12)


def test_clamp_rate_zero_for_random_views(ref):
    loss = DebiasedContrastiveLoss(0.5, 0.1)
    loss(*ref.make_views(8, 8, 23))
    assert loss.last_diagnostics["clamp_rate"].item() == 0.0


def test_no_clamp_matches_official_and_goes_non_finite_when_estimate_negative(ref):
    z1, z2 = ref.make_views(6, 8, 24)
    ref.assert_same(
        DebiasedContrastiveLoss(0.5, 0.1, clamp=False),
        lambda a, b: ref.official_dcl(a, b, 0.5, 0.1, clamp=False),
        z1,
        z2,
    )
    aligned = z1.detach().clone()
    assert not torch.isfinite(DebiasedContrastiveLoss(0.5, 0.5, clamp=False)(aligned, aligned.clone()))


def test_neg_mask_uses_per_row_negative_count(ref):
    z1, z2 = ref.make_views(5, 4, 25)
    g = torch.Generator().manual_seed(26)
    mask = torch.rand(10, 10, generator=g) < 0.6
    ref.assert_same(
        lambda a, b: DebiasedContrastiveLoss(0.4, 0.1)(a, b, neg_mask=mask),
        lambda a, b: ref.official_dcl(a, b, 0.4, 0.1, neg_mask=mask),
        z1,
        z2,
    )


def test_clamp_must_be_bool():
    with pytest.raises(TypeError, match="clamp"):
        DebiasedContrastiveLoss(clamp=1)
