"""HCL: spec section 9 identities, official exp-space reference, weights and diagnostics."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from batchsampler.losses import (
    DebiasedContrastiveLoss,
    HardNegativeContrastiveLoss,
    NTXentLoss,
)

HYP = settings(max_examples=20, deadline=None)
SEEDS = st.integers(0, 2**31 - 1)


@HYP
@given(
    batch=st.integers(2, 7),
    t=st.sampled_from([0.5, 0.2, 0.1]),
    tau_plus=st.sampled_from([0.0, 0.05, 0.1]),
    seed=SEEDS,
)
def test_beta_zero_is_dcl(ref, batch, t, tau_plus, seed):
    z1, z2 = ref.make_views(batch, 5, seed)
    ref.assert_same(
        HardNegativeContrastiveLoss(temperature=t, tau_plus=tau_plus, beta=0.0),
        DebiasedContrastiveLoss(temperature=t, tau_plus=tau_plus),
        z1,
        z2,
    )


@HYP
@given(batch=st.integers(2, 7), t=st.sampled_from([0.5, 0.2, 0.1]), seed=SEEDS)
def test_beta_zero_tau_plus_zero_is_ntxent(ref, batch, t, seed):
    z1, z2 = ref.make_views(batch, 5, seed)
    ref.assert_same(HardNegativeContrastiveLoss(t, tau_plus=0.0, beta=0.0), NTXentLoss(t), z1, z2)


@pytest.mark.parametrize("t", [0.5, 0.2, 0.1])
@pytest.mark.parametrize("tau_plus", [0.0, 0.05, 0.1])
@pytest.mark.parametrize("beta", [0.5, 1.0, 2.0, 6.0])
def test_stable_form_matches_official_exp_space(ref, t, tau_plus, beta):
    z1, z2 = ref.make_views(6, 5, 31)
    ref.assert_same(
        HardNegativeContrastiveLoss(t, tau_plus, beta),
        lambda a, b: ref.official_hcl(a, b, t, tau_plus, beta),
        z1,
        z2,
        rtol=1e-9,
    )


def test_detached_weights_same_value_different_gradient(ref):
    z1, z2 = ref.make_views(6, 5, 32)
    attached = HardNegativeContrastiveLoss(0.5, 0.1, 1.0)
    detached = HardNegativeContrastiveLoss(0.5, 0.1, 1.0, detach_weights=True)
    ref.assert_same(detached, lambda a, b: ref.official_hcl(a, b, 0.5, 0.1, 1.0, detach=True), z1, z2)
    va, ga, _ = ref.value_and_grads(attached, z1, z2)
    vd, gd, _ = ref.value_and_grads(detached, z1, z2)
    torch.testing.assert_close(va, vd)
    assert (ga - gd).abs().max() > 1e-4


def test_hardness_increases_loss(ref):
    # a larger beta puts weight on harder (higher-similarity) negatives
    z1, z2 = ref.make_views(8, 6, 33, noise=0.5)
    values = [HardNegativeContrastiveLoss(0.5, 0.0, beta)(z1, z2).item() for beta in (0.0, 1.0, 4.0)]
    assert values[0] < values[1] < values[2]


def test_ess_diagnostic(ref):
    z1, z2 = ref.make_views(6, 5, 34)
    uniform = HardNegativeContrastiveLoss(0.5, 0.1, beta=0.0)
    uniform(z1, z2)
    assert uniform.last_diagnostics["ess"].item() == pytest.approx(10.0, rel=1e-12)
    assert uniform.last_diagnostics["ess_fraction"].item() == pytest.approx(1.0, rel=1e-12)
    sharp = HardNegativeContrastiveLoss(0.05, 0.1, beta=50.0)
    sharp(z1, z2)
    assert sharp.last_diagnostics["ess"].item() < 2.0  # weights collapse on the hardest negative


def test_neg_mask_matches_official_per_row(ref):
    z1, z2 = ref.make_views(5, 4, 35)
    mask = torch.rand(10, 10, generator=torch.Generator().manual_seed(36)) < 0.6
    ref.assert_same(
        lambda a, b: HardNegativeContrastiveLoss(0.3, 0.1, 1.5)(a, b, neg_mask=mask),
        lambda a, b: ref.official_hcl(a, b, 0.3, 0.1, 1.5, neg_mask=mask),
        z1,
        z2,
    )


@pytest.mark.parametrize("bad", [-0.5, float("nan")])
def test_negative_beta_rejected(bad):
    with pytest.raises(ValueError, match="beta"):
        HardNegativeContrastiveLoss(beta=bad)
