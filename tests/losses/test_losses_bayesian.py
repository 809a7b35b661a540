"""BCL: NT-Xent identity, official reference (with and without fudges), ECDF, weights."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from batchsampler.losses import BayesianContrastiveLoss, NTXentLoss
from batchsampler.losses.bayesian import bcl_importance_weights

HYP = settings(max_examples=20, deadline=None)
SEEDS = st.integers(0, 2**31 - 1)


@HYP
@given(
    batch=st.integers(2, 7),
    t=st.sampled_from([0.5, 0.2, 0.1]),
    tau_plus=st.sampled_from([0.0, 0.05, 0.1]),
    seed=SEEDS,
)
def test_alpha_beta_half_is_ntxent(ref, batch, t, tau_plus, seed):
    z1, z2 = ref.make_views(batch, 5, seed)
    ref.assert_same(BayesianContrastiveLoss(t, tau_plus, alpha=0.5, beta=0.5), NTXentLoss(t), z1, z2)


def test_official_fudges_shift_the_loss_slightly(ref):
    z1, z2 = ref.make_views(8, 6, 41)
    fudged = BayesianContrastiveLoss(0.5, 0.1, 0.5, 0.5, eps=1e-3)
    ref.assert_same(fudged, lambda a, b: ref.official_bcl(a, b, 0.5, 0.1, 0.5, 0.5, eps=1e-3), z1, z2)
    gap = (NTXentLoss(0.5)(z1, z2) - fudged(z1, z2)).item()
    assert 1e-4 < gap < 5e-3


@pytest.mark.parametrize("alpha,beta", [(0.7, 1.0), (0.8, 1.0), (0.9, 0.9), (0.6, 0.5), (1.0, 0.7)])
@pytest.mark.parametrize("eps", [0.0, 1e-3])
def test_matches_official_reference(ref, alpha, beta, eps):
    z1, z2 = ref.make_views(7, 5, 42)
    ref.assert_same(
        BayesianContrastiveLoss(0.5, 0.1, alpha, beta, eps=eps),
        lambda a, b: ref.official_bcl(a, b, 0.5, 0.1, alpha, beta, eps=eps),
        z1,
        z2,
        rtol=1e-9,
    )


def test_normalized_weights_match_self_normalised_reference(ref):
    z1, z2 = ref.make_views(6, 5, 43)
    ref.assert_same(
        BayesianContrastiveLoss(0.5, 0.1, 0.8, 1.0, normalize_weights=True),
        lambda a, b: ref.official_bcl(a, b, 0.5, 0.1, 0.8, 1.0, eps=0.0, normalize=True),
        z1,
        z2,
    )


def test_neg_mask_matches_reference(ref):
    z1, z2 = ref.make_views(5, 4, 44)
    mask = torch.rand(10, 10, generator=torch.Generator().manual_seed(45)) < 0.6
    ref.assert_same(
        lambda a, b: BayesianContrastiveLoss(0.4, 0.1, 0.8, 0.9)(a, b, neg_mask=mask),
        lambda a, b: ref.official_bcl(a, b, 0.4, 0.1, 0.8, 0.9, eps=0.0, neg_mask=mask),
        z1,
        z2,
    )


@HYP
@given(rows=st.integers(1, 5), cols=st.integers(1, 12), seed=SEEDS)
def test_sorted_ecdf_equals_pairwise_ecdf(rows, cols, seed):
    g = torch.Generator().manual_seed(seed)
    # few distinct values so that ties occur
    x = torch.randint(0, 4, (rows, cols), generator=g).double()
    valid = torch.rand(rows, cols, generator=g) < 0.7
    cdf = BayesianContrastiveLoss.empirical_cdf(x, valid)
    for r in range(rows):
        v = x[r][valid[r]]
        for c in range(cols):
            if valid[r, c]:
                assert cdf[r, c].item() == pytest.approx(((v <= x[r, c]).sum() / len(v)).item())


def test_weights_range_and_linear_branch():
    u = torch.linspace(0.01, 1.0, 100, dtype=torch.float64)
    # alpha = beta = 0.5: all weights are exactly one
    torch.testing.assert_close(bcl_importance_weights(u, 0.5, 0.5, 0.1), torch.ones_like(u))
    # spec: at beta = 1 the largest weight is 2 / (2 tau-(1-alpha) + 2 tau+ alpha)
    w = bcl_importance_weights(u, 0.8, 1.0, 0.1)
    assert w.max().item() == pytest.approx(2 / (2 * 0.9 * 0.2 + 2 * 0.1 * 0.8), rel=1e-9)
    assert (w > 0).all() and w[0] < w[-1]  # harder negatives (higher rank) weigh more
    # tau_plus = 0.5 makes A = 0: the rationalised root is finite and equals u / b
    w_half = bcl_importance_weights(u, 0.8, 1.0, 0.5)
    assert torch.isfinite(w_half).all()


def test_weights_do_not_depend_on_temperature(ref):
    z1, z2 = ref.make_views(6, 5, 46)
    diag = []
    for t in (0.5, 0.05):
        loss = BayesianContrastiveLoss(t, 0.1, 0.8, 1.0)
        loss(z1, z2)
        diag.append(loss.last_diagnostics["mean_weight"].item())
    assert diag[0] == pytest.approx(diag[1], rel=1e-12)


def test_parameter_validation():
    with pytest.raises(ValueError, match="alpha"):
        BayesianContrastiveLoss(alpha=1.5)
    with pytest.raises(ValueError, match="beta"):
        BayesianContrastiveLoss(beta=-0.1)
    with pytest.raises(ValueError, match="eps"):
        BayesianContrastiveLoss(eps=-1e-3)
    with pytest.raises(ValueError, match="alpha=1.0 and beta=1.0"):
        BayesianContrastiveLoss(alpha=1.0, beta=1.0)
    BayesianContrastiveLoss(alpha=1.0, beta=1.0, eps=1e-3)  # the official code's setting is allowed
