"""NT-Xent: hand-computed values, naive loop reference, neg_mask semantics."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from batchsampler.losses import NTXentLoss

HYP = settings(max_examples=20, deadline=None)


def test_hand_computed_orthogonal_case():
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    # every anchor: positive similarity 1, two negatives of similarity 0
    expected = math.log(1 + 2 * math.exp(-1 / 0.5))
    assert NTXentLoss(temperature=0.5)(z, z.clone()).item() == pytest.approx(expected, rel=1e-14)


def test_hand_computed_asymmetric_case():
    z1 = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    z2 = torch.tensor([[0.6, 0.8], [1.0, 0.0]], dtype=torch.float64)
    e = math.exp
    per_anchor = [
        -0.6 + math.log(e(0.6) + e(0.0) + e(1.0)),  # z1[0]: pos z2[0]; neg z1[1], z2[1]
        math.log(e(0.0) + e(0.0) + e(0.8)),  # z1[1]: pos z2[1]; neg z1[0], z2[0]
        -0.6 + math.log(e(0.6) + e(0.8) + e(0.6)),  # z2[0]: pos z1[0]; neg z1[1], z2[1]
        math.log(e(0.0) + e(1.0) + e(0.6)),  # z2[1]: pos z1[1]; neg z1[0], z2[0]
    ]
    out = NTXentLoss(temperature=1.0, reduction="none")(z1, z2)
    torch.testing.assert_close(out, torch.tensor(per_anchor, dtype=torch.float64), rtol=1e-14, atol=0)
    assert NTXentLoss(temperature=1.0)(z1, z2).item() == pytest.approx(sum(per_anchor) / 4, rel=1e-14)


@HYP
@given(
    batch=st.integers(2, 6),
    dim=st.integers(1, 6),
    t=st.floats(0.05, 2.0),
    seed=st.integers(0, 2**31 - 1),
)
def test_matches_naive_loop_values_and_grads(ref, batch, dim, t, seed):
    z1, z2 = ref.make_views(batch, dim, seed)
    ref.assert_same(NTXentLoss(temperature=t), lambda a, b: ref.naive_ntxent(a, b, t), z1, z2)


def test_matches_cross_entropy_over_full_logits(ref):
    z1, z2 = ref.make_views(5, 4, 11)
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    logits = z @ z.T / 0.2
    logits = logits.masked_fill(torch.eye(10, dtype=torch.bool), float("-inf"))
    target = (torch.arange(10) + 5) % 10
    torch.testing.assert_close(NTXentLoss(temperature=0.2)(z1, z2), F.cross_entropy(logits, target))


@HYP
@given(batch=st.integers(2, 6), keep=st.floats(0.0, 1.0), seed=st.integers(0, 2**31 - 1))
def test_neg_mask_equals_dropping_columns(ref, batch, keep, seed):
    z1, z2 = ref.make_views(batch, 4, seed)
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(2 * batch, 2 * batch, generator=g) < keep
    structural = ~torch.eye(2 * batch, dtype=torch.bool)
    structural[torch.arange(2 * batch), (torch.arange(2 * batch) + batch) % (2 * batch)] = False
    if not (mask & structural).any():
        out = NTXentLoss(temperature=0.3)(z1, z2, neg_mask=mask)
        assert out.item() == 0.0
        return
    ref.assert_same(
        lambda a, b: NTXentLoss(temperature=0.3)(a, b, neg_mask=mask),
        lambda a, b: ref.naive_ntxent(a, b, 0.3, neg_mask=mask),
        z1,
        z2,
    )


def test_single_negative_gives_softplus_of_margin(ref):
    # keep only the hardest negative: loss_a = softplus(l_neg - l_pos)
    z1, z2 = ref.make_views(4, 3, 12)
    t, n = 0.25, 8
    z = F.normalize(torch.cat([z1, z2]), dim=1).detach()
    logits = z @ z.T / t
    idx = torch.arange(n)
    partner = (idx + 4) % n
    masked = logits.clone()
    masked[idx, idx] = masked[idx, partner] = float("-inf")
    hardest = masked.argmax(1)
    mask = torch.zeros(n, n, dtype=torch.bool)
    mask[idx, hardest] = True
    out = NTXentLoss(temperature=t, reduction="none")(z1, z2, neg_mask=mask)
    expected = F.softplus(logits[idx, hardest] - logits[idx, partner])
    torch.testing.assert_close(out, expected)
    # dropping negatives can only lower each anchor's loss
    assert (out < NTXentLoss(temperature=t, reduction="none")(z1, z2)).all()


def test_masking_partner_or_self_entries_is_ignored(ref):
    z1, z2 = ref.make_views(4, 3, 13)
    mask = torch.ones(8, 8, dtype=torch.bool)
    mask[torch.arange(8), torch.arange(8)] = False
    mask[torch.arange(8), (torch.arange(8) + 4) % 8] = False
    torch.testing.assert_close(NTXentLoss()(z1, z2, neg_mask=mask), NTXentLoss()(z1, z2))


def test_swapping_views_is_symmetric(ref):
    z1, z2 = ref.make_views(5, 3, 14)
    torch.testing.assert_close(NTXentLoss()(z1, z2), NTXentLoss()(z2, z1))


def test_perfect_alignment_beats_random(ref):
    z1, _ = ref.make_views(8, 16, 15)
    z_rand = torch.randn(8, 16, generator=torch.Generator().manual_seed(16), dtype=torch.float64)
    assert NTXentLoss(0.1)(z1, z1.clone()) < NTXentLoss(0.1)(z1, z_rand)
