"""Shared behaviour of all two-view losses: validation, dtypes, autocast, reduction, masks."""

from __future__ import annotations

import pytest
import torch

from batchsampler.losses import (
    BayesianContrastiveLoss,
    DebiasedContrastiveLoss,
    HardNegativeContrastiveLoss,
    HardSupervisedContrastiveLoss,
    NTXentLoss,
    PotentialSampleLoss,
)
from batchsampler.losses.base import masked_logsumexp
from batchsampler.losses.validation import check_range

ALL = [
    NTXentLoss,
    DebiasedContrastiveLoss,
    HardNegativeContrastiveLoss,
    BayesianContrastiveLoss,
    HardSupervisedContrastiveLoss,
    PotentialSampleLoss,
]
LABELS = torch.tensor([0, 1, 0, 2, 1, 3])


def _call(loss, z1, z2, **kw):
    labels = kw.pop("labels") if "labels" in kw else LABELS[: z1.shape[0]]
    return loss(z1, z2, labels=labels, **kw)


@pytest.mark.parametrize("cls", ALL)
class TestInputValidation:
    def test_shape_mismatch_names_both_views(self, cls, ref):
        z1, _ = ref.make_views(6, 4, 0)
        z2 = torch.randn(5, 4, dtype=torch.float64)
        with pytest.raises(ValueError, match=r"z1 and z2 must have the same shape"):
            _call(cls(), z1, z2, labels=LABELS)

    def test_non_2d_input(self, cls):
        with pytest.raises(ValueError, match=r"z1 must be 2-D"):
            _call(cls(), torch.randn(6), torch.randn(6), labels=LABELS)
        with pytest.raises(ValueError, match=r"z2 must be 2-D"):
            _call(cls(), torch.randn(6, 3), torch.randn(6, 3, 1), labels=LABELS)

    def test_batch_too_small(self, cls):
        with pytest.raises(ValueError, match=r"batch size B .* must be >= 2"):
            _call(cls(), torch.randn(1, 3), torch.randn(1, 3), labels=LABELS[:1])

    def test_non_tensor_and_integer_inputs(self, cls):
        with pytest.raises(TypeError, match=r"z1 must be a torch.Tensor"):
            _call(cls(), [[1.0, 2.0]], torch.randn(1, 2), labels=LABELS)
        with pytest.raises(TypeError, match=r"z2 must have a floating-point dtype"):
            _call(cls(), torch.randn(6, 2), torch.ones(6, 2, dtype=torch.long), labels=LABELS)

    def test_labels_wrong_shape_or_dtype(self, cls):
        z1, z2 = torch.randn(6, 3), torch.randn(6, 3)
        with pytest.raises(ValueError, match=r"labels must have shape \(B,\) = \(6,\)"):
            cls()(z1, z2, labels=LABELS[:5])
        with pytest.raises(TypeError, match=r"labels must have an integer dtype"):
            cls()(z1, z2, labels=LABELS.float())

    def test_neg_mask_wrong_shape_or_dtype(self, cls):
        z1, z2 = torch.randn(6, 3), torch.randn(6, 3)
        with pytest.raises(ValueError, match=r"neg_mask must have shape \[2B, 2B\] = \(12, 12\)"):
            _call(cls(), z1, z2, neg_mask=torch.ones(12, 11, dtype=torch.bool))
        with pytest.raises(TypeError, match=r"neg_mask must have dtype torch.bool"):
            _call(cls(), z1, z2, neg_mask=torch.ones(12, 12))

    @pytest.mark.parametrize("bad", [0.0, -0.1, float("nan"), float("inf")])
    def test_temperature_must_be_positive_finite(self, cls, bad):
        with pytest.raises(ValueError, match=r"temperature must be a finite number in \(0, inf\)"):
            cls(temperature=bad)

    def test_temperature_type_and_reduction(self, cls):
        with pytest.raises(TypeError, match=r"temperature must be a real number"):
            cls(temperature="0.5")
        with pytest.raises(ValueError, match=r"reduction must be one of"):
            cls(reduction="avg")


@pytest.mark.parametrize("cls", [DebiasedContrastiveLoss, HardNegativeContrastiveLoss, BayesianContrastiveLoss])
@pytest.mark.parametrize("bad", [-0.01, 1.0, 1.5])
def test_tau_plus_outside_unit_interval(cls, bad):
    with pytest.raises(ValueError, match=r"tau_plus must be a finite number in \[0, 1\)"):
        cls(tau_plus=bad)


def test_labels_missing_for_hscl():
    with pytest.raises(ValueError, match=r"labels are required by HardSupervisedContrastiveLoss"):
        HardSupervisedContrastiveLoss()(torch.randn(4, 3), torch.randn(4, 3))


def test_validation_happens_before_work(monkeypatch):
    # a bad neg_mask must fail before the similarity matrix is ever built
    import batchsampler.losses.base as base

    def boom(*args, **kwargs):
        raise AssertionError("work started before validation")

    monkeypatch.setattr(base, "build_pair_logits", boom)
    with pytest.raises(ValueError, match="neg_mask"):
        NTXentLoss()(torch.randn(4, 3), torch.randn(4, 3), neg_mask=torch.ones(3, 3, dtype=torch.bool))


def test_check_range_message_names_argument():
    with pytest.raises(ValueError, match=r"^alpha must be a finite number in \[0, 1\], got 2$"):
        check_range("alpha", 2, 0.0, 1.0)
    with pytest.raises(TypeError, match="beta"):
        check_range("beta", True, 0.0, 1.0)
    assert check_range("beta", 1, 0.0, 1.0) == 1.0


def test_masked_logsumexp_empty_rows_are_finite_with_finite_grad():
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[True, False, True, False], [False] * 4, [True] * 4])
    out = masked_logsumexp(x, mask)
    torch.testing.assert_close(out[0], torch.logsumexp(x[0, [0, 2]], 0))
    assert torch.isfinite(out).all()
    (g,) = torch.autograd.grad(out.sum(), x)
    assert torch.isfinite(g).all() and (g[0, [1, 3]] == 0).all()


@pytest.mark.parametrize("cls", ALL)
class TestDtypesAndReductions:
    def test_float64_stays_float64_and_half_is_upcast(self, cls, ref):
        z1, z2 = ref.make_views(6, 5, 1)
        assert _call(cls(), z1, z2).dtype == torch.float64
        out16 = _call(cls(), z1.detach().half(), z2.detach().half())
        assert out16.dtype == torch.float32
        expected = _call(cls(), z1.detach().half().float(), z2.detach().half().float())
        torch.testing.assert_close(out16, expected, rtol=0, atol=0)

    def test_bfloat16_autocast_computes_in_float32(self, cls):
        g = torch.Generator().manual_seed(2)
        layer = torch.nn.Linear(8, 5)
        with torch.no_grad():
            layer.weight.copy_(torch.randn(5, 8, generator=g))
        x1, x2 = torch.randn(6, 8, generator=g), torch.randn(6, 8, generator=g)
        loss = cls(temperature=0.1)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            z1, z2 = layer(x1), layer(x2)
            assert z1.dtype == torch.bfloat16  # autocast is really active
            out = _call(loss, z1, z2)
        assert out.dtype == torch.float32
        # the same bf16 embeddings, upcast and computed outside autocast: identical
        expected = _call(loss, z1.float(), z2.float())
        torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-6)
        (grad,) = torch.autograd.grad(out, layer.weight)
        assert torch.isfinite(grad).all()

    def test_reductions_are_consistent(self, cls, ref):
        z1, z2 = ref.make_views(6, 4, 3)
        mean = _call(cls(reduction="mean"), z1, z2)
        total = _call(cls(reduction="sum"), z1, z2)
        per = _call(cls(reduction="none"), z1, z2)
        torch.testing.assert_close(per.sum(), total)
        count = (per != 0).sum() if cls is HardSupervisedContrastiveLoss else 12
        torch.testing.assert_close(mean, total / count)
        if cls is not HardSupervisedContrastiveLoss:
            assert per.shape == (12,)

    def test_scale_invariance_from_internal_normalisation(self, cls, ref):
        z1, z2 = ref.make_views(6, 4, 4)
        scale = torch.tensor([[0.1], [3.0], [7.0], [0.5], [2.0], [11.0]], dtype=torch.float64)
        torch.testing.assert_close(_call(cls(), z1, z2), _call(cls(), z1 * scale, 5.0 * z2))

    def test_instance_mask_equals_expanded_view_mask(self, cls, ref):
        z1, z2 = ref.make_views(6, 4, 5)
        g = torch.Generator().manual_seed(6)
        inst = torch.rand(6, 6, generator=g) > 0.3
        a = _call(cls(), z1, z2, neg_mask=inst)
        b = _call(cls(), z1, z2, neg_mask=inst.repeat(2, 2))
        torch.testing.assert_close(a, b)
        assert not torch.allclose(a, _call(cls(), z1, z2))  # the mask really matters

    def test_fully_masked_batch_is_zero_with_finite_grads(self, cls, ref):
        z1, z2 = ref.make_views(4, 3, 7)
        out = _call(cls(), z1, z2, neg_mask=torch.zeros(8, 8, dtype=torch.bool))
        g1, g2 = torch.autograd.grad(out, (z1, z2), allow_unused=False)
        assert out.item() == 0.0
        assert torch.isfinite(g1).all() and torch.isfinite(g2).all()

    def test_diagnostics_are_detached_scalars(self, cls, ref):
        loss = cls()
        z1, z2 = ref.make_views(6, 4, 8)
        _call(loss, z1, z2)
        assert loss.last_diagnostics
        for value in loss.last_diagnostics.values():
            assert value.dim() == 0 and not value.requires_grad and torch.isfinite(value)
