"""Optional robust contrastive objective (Tran et al., arXiv 2311.09671, spec section G)."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import compute_dtype, no_autocast
from .ntxent import NTXentLoss
from .validation import check_choice, check_range, check_views

__all__ = ["RobustContrastiveObjective", "gaussian_mmd2", "moment_divergence"]

Divergence = Literal["mmd", "moment"]


def gaussian_mmd2(x: Tensor, y: Tensor, bandwidth: float = 1.0) -> Tensor:
    r"""Biased (V-statistic) squared MMD with a Gaussian kernel.

    ``k(u, v) = exp(-||u - v||^2 / (2 bandwidth^2))``; returns
    ``mean K_xx + mean K_yy - 2 mean K_xy >= 0``, zero when ``x == y``.

    Parameters
    ----------
    x, y : Tensor, ``[n, d]`` and ``[m, d]``
        Samples (same dtype and device).
    bandwidth : float, default 1.0
        Kernel width; 1.0 suits L2-normalised embeddings (distances in [0, 2]).
    """
    gamma = 1.0 / (2.0 * bandwidth * bandwidth)

    def k(u: Tensor, v: Tensor) -> Tensor:
        d2 = (u.pow(2).sum(1, keepdim=True) + v.pow(2).sum(1)[None, :] - 2.0 * u @ v.T).clamp_min(0.0)
        return torch.exp(-gamma * d2).mean()

    return k(x, x) + k(y, y) - 2.0 * k(x, y)


def moment_divergence(x: Tensor, y: Tensor) -> Tensor:
    r"""``||mean(x) - mean(y)||^2 + ||cov(x) - cov(y)||_F^2`` (first two moments)."""
    mx, my = x.mean(0), y.mean(0)
    cx = (x - mx).T @ (x - mx) / x.shape[0]
    cy = (y - my).T @ (y - my) / y.shape[0]
    return (mx - my).pow(2).sum() + (cx - cy).pow(2).sum()


class RobustContrastiveObjective(nn.Module):
    r"""Adversarial + benign contrastive terms + a benign/adversarial divergence (optional).

    .. math::

        \mathcal L = \mathcal L_{\text{adv}} + \lambda_b\,\mathcal L_{\text{benign}}
                     + \lambda_d\, D(\text{benign} \,\|\, \text{adversarial})

    following the bound of Tran et al.: the robust supervised loss of a linear
    probe is controlled by the adversarial contrastive loss, the *benign*
    contrastive loss (so do not drop it) and a global divergence between the
    benign and adversarial embedding distributions.

    * ``L_adv = base_loss(z1_adv, z2_adv)``, or ``base_loss(z1_adv, z2)`` when
      only one view is attacked (adversarial anchor, clean positive).
    * ``L_benign = base_loss(z1, z2)``.
    * ``D`` compares each clean view with its adversarial counterpart
      (``z1`` vs ``z1_adv``, and ``z2`` vs ``z2_adv`` if given, averaged) on
      L2-normalised embeddings.  The paper uses a GAN-style discriminator; the
      squared Gaussian MMD (``"mmd"``) and the two-moment distance
      (``"moment"``) offered here are cheap surrogates of *this library's*
      choosing, not the paper's estimator.

    Sharpness-aware minimisation of the benign term (the paper's GSA-RSL) is an
    optimiser concern and is not part of this module.  This objective needs the
    adversarial embeddings, so it is not a drop-in ``--loss`` choice and is not
    in the ``LOSSES`` registry.

    Parameters
    ----------
    base_loss : nn.Module, optional
        Two-view loss called as ``base_loss(za, zb, labels, neg_mask)``;
        default ``NTXentLoss(temperature=0.5)``.  Any loss of this package works.
    benign_weight : float, default 1.0
        ``lambda_b >= 0``.
    divergence_weight : float, default 1.0
        ``lambda_d >= 0``.
    divergence : {"mmd", "moment"}, default "mmd"
        Divergence surrogate.
    bandwidth : float, default 1.0
        Gaussian kernel width for ``"mmd"``, ``> 0``.

    Attributes
    ----------
    last_diagnostics : dict[str, Tensor]
        ``"adversarial"``, ``"benign"``, ``"divergence"``: the three terms.

    Raises
    ------
    TypeError
        ``base_loss`` not an ``nn.Module``; non-numeric weights.
    ValueError
        Negative weights, ``bandwidth <= 0``, unknown ``divergence``; in
        ``forward``, adversarial views whose shape differs from the clean ones.

    References
    ----------
    N. N. Tran, L. Tran, H. Phan, A. Bui, T. Pham, T. Tran, D. Phung, T. Le.
    "Robust Contrastive Learning With Theory Guarantee" / "Generalization Bounds
    for Robust Contrastive Learning: From Theory to Practice." arXiv:2311.09671.
    """

    def __init__(
        self,
        base_loss: nn.Module | None = None,
        benign_weight: float = 1.0,
        divergence_weight: float = 1.0,
        divergence: Divergence = "mmd",
        bandwidth: float = 1.0,
    ) -> None:
        super().__init__()
        if base_loss is None:
            base_loss = NTXentLoss(temperature=0.5)
        if not isinstance(base_loss, nn.Module):
            raise TypeError(f"base_loss must be a torch.nn.Module, got {type(base_loss).__name__}")
        self.base_loss = base_loss
        self.benign_weight = check_range("benign_weight", benign_weight, 0.0, None)
        self.divergence_weight = check_range("divergence_weight", divergence_weight, 0.0, None)
        self.divergence: Divergence = check_choice("divergence", divergence, ("mmd", "moment"))  # type: ignore[assignment]
        self.bandwidth = check_range("bandwidth", bandwidth, 0.0, None, low_open=True)
        self.last_diagnostics: dict[str, Tensor] = {}

    def _divergence(self, clean: Tensor, adv: Tensor) -> Tensor:
        dtype = compute_dtype(clean, adv)
        x = F.normalize(clean.to(dtype), dim=1)
        y = F.normalize(adv.to(dtype), dim=1)
        if self.divergence == "mmd":
            return gaussian_mmd2(x, y, self.bandwidth)
        return moment_divergence(x, y)

    def forward(
        self,
        z1: Tensor,
        z2: Tensor,
        labels: Tensor | None = None,
        neg_mask: Tensor | None = None,
        *,
        z1_adv: Tensor,
        z2_adv: Tensor | None = None,
    ) -> Tensor:
        """Compute the objective.

        Parameters
        ----------
        z1, z2 : Tensor, ``[B, d]``
            Clean (benign) views.
        labels, neg_mask : Tensor, optional
            Passed to ``base_loss`` for both terms.
        z1_adv : Tensor, ``[B, d]``, keyword-only, required
            Adversarial embedding of the first view.
        z2_adv : Tensor, ``[B, d]``, keyword-only, optional
            Adversarial embedding of the second view.

        Returns
        -------
        Tensor
            Scalar objective (float32, or float64 for float64 inputs) if
            ``base_loss`` reduces to a scalar.
        """
        z1, z2 = check_views(z1, z2)
        check_views(z1, z1_adv, names=("z1", "z1_adv"))
        if z2_adv is not None:
            check_views(z2, z2_adv, names=("z2", "z2_adv"))
        adversarial = self.base_loss(z1_adv, z2 if z2_adv is None else z2_adv, labels, neg_mask)
        benign = self.base_loss(z1, z2, labels, neg_mask)
        with no_autocast(z1.device):
            div = self._divergence(z1, z1_adv)
            if z2_adv is not None:
                div = 0.5 * (div + self._divergence(z2, z2_adv))
        total = adversarial + self.benign_weight * benign + self.divergence_weight * div
        self.last_diagnostics = {
            "adversarial": adversarial.detach(),
            "benign": benign.detach(),
            "divergence": div.detach(),
        }
        return total

    def extra_repr(self) -> str:
        return (
            f"benign_weight={self.benign_weight}, divergence_weight={self.divergence_weight}, "
            f"divergence={self.divergence!r}, bandwidth={self.bandwidth}"
        )
