"""RobustContrastiveObjective: composition of terms, divergences, validation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from batchsampler.losses import (
    DebiasedContrastiveLoss,
    NTXentLoss,
    RobustContrastiveObjective,
)
from batchsampler.losses.robust import gaussian_mmd2, moment_divergence


def _adv(z: torch.Tensor, seed: int, eps: float = 0.3) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (z.detach() + eps * torch.randn(z.shape, generator=g, dtype=z.dtype)).requires_grad_()


@pytest.mark.parametrize("divergence", ["mmd", "moment"])
def test_objective_is_weighted_sum_of_terms(ref, divergence):
    z1, z2 = ref.make_views(6, 5, 81)
    a1, a2 = _adv(z1, 82), _adv(z2, 83)
    base = DebiasedContrastiveLoss(0.5, 0.1)
    obj = RobustContrastiveObjective(base, benign_weight=0.7, divergence_weight=2.0, divergence=divergence)
    out = obj(z1, z2, z1_adv=a1, z2_adv=a2)
    div_fn = gaussian_mmd2 if divergence == "mmd" else moment_divergence
    n = lambda x: F.normalize(x, dim=1)  # noqa: E731
    div = 0.5 * (div_fn(n(z1), n(a1)) + div_fn(n(z2), n(a2)))
    expected = base(a1, a2) + 0.7 * base(z1, z2) + 2.0 * div
    torch.testing.assert_close(out, expected)
    assert obj.last_diagnostics["divergence"].item() > 0
    torch.testing.assert_close(obj.last_diagnostics["benign"], base(z1, z2).detach())


def test_single_adversarial_view_pairs_with_clean_positive(ref):
    z1, z2 = ref.make_views(6, 5, 84)
    a1 = _adv(z1, 85)
    obj = RobustContrastiveObjective(NTXentLoss(0.5), benign_weight=0.0, divergence_weight=0.0)
    torch.testing.assert_close(obj(z1, z2, z1_adv=a1), NTXentLoss(0.5)(a1, z2))
    (grad,) = torch.autograd.grad(obj(z1, z2, z1_adv=a1), a1)
    assert grad.abs().sum() > 0


def test_divergences_vanish_for_identical_and_grow_with_shift():
    g = torch.Generator().manual_seed(86)
    x = F.normalize(torch.randn(16, 4, generator=g, dtype=torch.float64), dim=1)
    near = F.normalize(x + 0.05 * torch.randn(16, 4, generator=g, dtype=torch.float64), dim=1)
    far = F.normalize(x + 1.0, dim=1)
    for fn in (gaussian_mmd2, moment_divergence):
        assert fn(x, x).abs().item() < 1e-12
        assert 0 < fn(x, near).item() < fn(x, far).item()


def test_identical_adversarial_views_reduce_to_scaled_base(ref):
    z1, z2 = ref.make_views(5, 4, 87)
    obj = RobustContrastiveObjective(benign_weight=1.0, divergence_weight=3.0)
    out = obj(z1, z2, z1_adv=z1, z2_adv=z2)
    torch.testing.assert_close(out, 2.0 * NTXentLoss(0.5)(z1, z2))


def test_validation(ref):
    z1, z2 = ref.make_views(5, 4, 88)
    obj = RobustContrastiveObjective()
    with pytest.raises(ValueError, match="z1 and z1_adv must have the same shape"):
        obj(z1, z2, z1_adv=torch.randn(4, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="z2 and z2_adv"):
        obj(z1, z2, z1_adv=z1, z2_adv=torch.randn(5, 3, dtype=torch.float64))
    with pytest.raises(TypeError, match="z1_adv"):
        obj(z1, z2)  # adversarial view is required
    with pytest.raises(TypeError, match="base_loss"):
        RobustContrastiveObjective(base_loss=lambda a, b: a.sum())
    with pytest.raises(ValueError, match="divergence_weight"):
        RobustContrastiveObjective(divergence_weight=-1.0)
    with pytest.raises(ValueError, match="bandwidth"):
        RobustContrastiveObjective(bandwidth=0.0)
    with pytest.raises(ValueError, match="divergence must be one of"):
        RobustContrastiveObjective(divergence="kl")
