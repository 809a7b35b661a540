"""PotentialSampleLoss (experimental): NT-Xent special case and a naive loop reference."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from batchsampler.losses import NTXentLoss, PotentialSampleLoss

HYP = settings(max_examples=15, deadline=None)


def naive_potential(z1, z2, t, k, weight, weighting, quantiles, neg_mask=None):
    """Row-by-row reading of the class docstring."""
    z = torch.cat([F.normalize(z1, dim=1), F.normalize(z2, dim=1)])
    batch, n = z1.shape[0], 2 * z1.shape[0]
    logits = z @ z.T / t
    losses = []
    for a in range(n):
        p = (a + batch) % n
        others = [j for j in range(n) if j not in (a, p)]
        order = sorted(others, key=lambda j: -logits[a, j].item())
        mined = order[: min(k, n - 2)]
        twins = {(j + batch) % n for j in mined}
        pool = [j for j in others if j not in mined and j not in twins]
        if neg_mask is not None:
            pool = [j for j in pool if neg_mask[a, j]]
        if not pool:
            continue
        values = sorted(logits[a, j].item() for j in pool)
        last = len(pool) - 1
        lo = values[math.floor(quantiles[0] * last)]
        hi = values[math.ceil(quantiles[1] * last)]
        kept = [j for j in pool if lo <= logits[a, j].item() <= hi]
        ng = len(pool) / len(kept) * sum(torch.exp(logits[a, j]) for j in kept)
        weights = {p: 1.0}
        if mined:
            if weighting == "soft":
                share = torch.softmax(logits[a, mined].detach(), 0).tolist()
            else:
                share = [1.0 / len(mined)] * len(mined)
            weights.update({j: weight * s for j, s in zip(mined, share, strict=True)})
        total = sum(weights.values())
        terms = [-torch.log(torch.exp(logits[a, b]) / (torch.exp(logits[a, b]) + ng)) for b in weights]
        losses.append(sum(w / total * term for w, term in zip(weights.values(), terms, strict=True)))
    return torch.stack(losses).mean()


@HYP
@given(batch=st.integers(2, 6), t=st.sampled_from([0.5, 0.1]), seed=st.integers(0, 2**31 - 1))
def test_no_mining_full_band_is_ntxent(ref, batch, t, seed):
    z1, z2 = ref.make_views(batch, 4, seed)
    loss = PotentialSampleLoss(t, num_mined_positives=0, negative_quantiles=(0.0, 1.0))
    ref.assert_same(loss, NTXentLoss(t), z1, z2)


@pytest.mark.parametrize("k", [1, 2])
@pytest.mark.parametrize("weighting", ["soft", "hard"])
@pytest.mark.parametrize("quantiles", [(0.1, 0.95), (0.25, 0.75), (0.0, 1.0)])
def test_matches_naive_reference(ref, k, weighting, quantiles):
    z1, z2 = ref.make_views(6, 5, 71)
    ref.assert_same(
        PotentialSampleLoss(0.3, k, 0.7, weighting, quantiles),
        lambda a, b: naive_potential(a, b, 0.3, k, 0.7, weighting, quantiles),
        z1,
        z2,
    )


def test_neg_mask_matches_naive_reference(ref):
    z1, z2 = ref.make_views(6, 5, 72)
    mask = torch.rand(12, 12, generator=torch.Generator().manual_seed(73)) < 0.7
    ref.assert_same(
        lambda a, b: PotentialSampleLoss(0.3, 1, 0.5, "soft", (0.1, 0.9))(a, b, neg_mask=mask),
        lambda a, b: naive_potential(a, b, 0.3, 1, 0.5, "soft", (0.1, 0.9), neg_mask=mask),
        z1,
        z2,
    )


def test_zero_weight_mining_only_removes_the_neighbour_from_negatives(ref):
    z1, z2 = ref.make_views(5, 4, 74)
    n = 10
    z = F.normalize(torch.cat([z1, z2]), dim=1).detach()
    logits = z @ z.T
    idx = torch.arange(n)
    logits[idx, idx] = logits[idx, (idx + 5) % n] = -float("inf")
    nearest = logits.argmax(1)
    mask = torch.ones(n, n, dtype=torch.bool)
    mask[idx, nearest] = False
    mask[idx, (nearest + 5) % n] = False
    loss = PotentialSampleLoss(0.5, 1, mined_weight=0.0, negative_quantiles=(0.0, 1.0))
    ref.assert_same(loss, lambda a, b: NTXentLoss(0.5)(a, b, neg_mask=mask), z1, z2)
    assert loss.last_diagnostics["mined_per_anchor"].item() == 1.0


def test_band_drops_negatives_and_reports_it(ref):
    z1, z2 = ref.make_views(8, 5, 75)
    loss = PotentialSampleLoss(0.5, 0, negative_quantiles=(0.25, 0.75))
    out = loss(z1, z2)
    assert 0.3 < loss.last_diagnostics["kept_fraction"].item() < 0.8
    assert not torch.allclose(out, NTXentLoss(0.5)(z1, z2))


def test_docstring_marks_experimental():
    assert "EXPERIMENTAL" in PotentialSampleLoss.__doc__
    assert "arXiv:2311.00358" in PotentialSampleLoss.__doc__


def test_parameter_validation():
    with pytest.raises(ValueError, match="num_mined_positives"):
        PotentialSampleLoss(num_mined_positives=-1)
    with pytest.raises(TypeError, match="num_mined_positives"):
        PotentialSampleLoss(num_mined_positives=1.5)
    with pytest.raises(ValueError, match="mined_weight"):
        PotentialSampleLoss(mined_weight=-1.0)
    with pytest.raises(ValueError, match="positive_weighting"):
        PotentialSampleLoss(positive_weighting="medium")
    with pytest.raises(ValueError, match="q_lo < q_hi"):
        PotentialSampleLoss(negative_quantiles=(0.5, 0.5))
    with pytest.raises(ValueError, match=r"negative_quantiles\[1\]"):
        PotentialSampleLoss(negative_quantiles=(0.1, 1.5))
    with pytest.raises(ValueError, match="negative_quantiles must be a pair"):
        PotentialSampleLoss(negative_quantiles=(0.1,))
