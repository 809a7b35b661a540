"""Hard negative contrastive loss (HCL) of Robinson et al., ICLR 2021."""

from __future__ import annotations

import torch
from torch import Tensor

from .base import (
    PairLogits,
    Reduction,
    effective_sample_size,
    masked_log_softmax,
    masked_logsumexp,
)
from .debiased import DebiasedContrastiveLoss
from .validation import check_range

__all__ = ["HardNegativeContrastiveLoss"]


class HardNegativeContrastiveLoss(DebiasedContrastiveLoss):
    r"""Hard negative contrastive loss (HCL): DCL with negatives tilted toward the anchor.

    Negatives are importance-weighted toward ``q_beta(x-) ~ exp(beta f(x).f(x-)) p(x-)``
    with self-normalised weights over the in-batch negatives,

    .. math::

        w_{aj} = \frac{e^{\beta\ell_{aj}}}{\sum_{k\in\mathcal N(a)} e^{\beta\ell_{ak}}},\qquad
        N g_a = \max\Big(\frac{N_a\sum_j w_{aj} e^{\ell_{aj}} - \tau^+ N_a e^{\ell_{a,p(a)}}}{1-\tau^+},
                         \; N_a e^{-1/t}\Big),

    and the loss is the DCL form ``-log(pos / (pos + Ng))`` averaged over the
    2B anchors.  ``beta`` multiplies the *temperature-scaled* logits, as in the
    official code (with ``t = 0.5``, ``beta = 1`` tilts by ``exp(2 s)``).  The
    weighted mass is computed as
    ``log N_a + logsumexp(log_softmax(beta * l) + l)``, so no ``exp((beta+1)/t)``
    is ever formed.

    Parameters
    ----------
    temperature : float, default 0.5
        ``t > 0``.
    tau_plus : float, default 0.1
        Class prior in ``[0, 1)``; ``0`` gives the hard-only "H-UCL" loss.
    beta : float, default 1.0
        Concentration ``>= 0``.  ``beta = 0`` is exactly
        :class:`~batchsampler.losses.DebiasedContrastiveLoss`; ``beta = 0,
        tau_plus = 0`` is NT-Xent.  The sampler already makes batches hard, so
        a smaller ``beta`` than the uniform-batch optimum (1.0) may be best.
    clamp : bool, default True
        Lower bound ``N e^{-1/t}`` as in DCL.
    detach_weights : bool, default False
        Stop gradients through ``w``.  The HCL code lets them flow (default);
        the H-SCL code detaches in some branches.
    reduction : {"mean", "sum", "none"}, default "mean"
        Mean over the 2B anchors.

    Attributes
    ----------
    last_diagnostics : dict[str, Tensor]
        ``"clamp_rate"``; ``"ess"``: mean effective sample size ``1 / sum_j w_aj^2``
        of the weights; ``"ess_fraction"``: mean of ``ess / N_a``.

    Raises
    ------
    TypeError
        Non-numeric hyperparameters or non-bool flags.
    ValueError
        ``temperature <= 0``, ``tau_plus`` outside ``[0, 1)``, ``beta < 0``.

    References
    ----------
    J. Robinson, C.-Y. Chuang, S. Sra, S. Jegelka. "Contrastive Learning with
    Hard Negative Samples." ICLR 2021, arXiv:2010.04592;
    code https://github.com/joshr17/HCL.
    """

    def __init__(
        self,
        temperature: float = 0.5,
        tau_plus: float = 0.1,
        beta: float = 1.0,
        clamp: bool = True,
        detach_weights: bool = False,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__(temperature=temperature, tau_plus=tau_plus, clamp=clamp, reduction=reduction)
        self.beta = check_range("beta", beta, 0.0, None)
        if not isinstance(detach_weights, bool):
            raise TypeError(f"detach_weights must be a bool, got {type(detach_weights).__name__}")
        self.detach_weights = detach_weights

    def _log_negative_mass(self, pair: PairLogits) -> tuple[Tensor, dict[str, Tensor]]:
        tilt = self.beta * pair.logits
        if self.detach_weights:
            tilt = tilt.detach()
        log_w = masked_log_softmax(tilt, pair.neg_valid)
        log_mass = torch.log(pair.num_neg.clamp_min(1)) + masked_logsumexp(log_w + pair.logits, pair.neg_valid)
        ess, frac = effective_sample_size(log_w, pair.neg_valid, pair.has_neg)
        return log_mass, {"ess": ess, "ess_fraction": frac}

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, beta={self.beta}, detach_weights={self.detach_weights}"
