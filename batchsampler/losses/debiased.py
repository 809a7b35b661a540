"""Debiased contrastive loss (DCL) of Chuang et al., NeurIPS 2020."""

from __future__ import annotations

from torch import Tensor

from .base import (
    ContrastiveLoss,
    PairLogits,
    Reduction,
    debiased_log_denominator,
    masked_logsumexp,
)
from .validation import check_range

__all__ = ["DebiasedContrastiveLoss"]


class DebiasedContrastiveLoss(ContrastiveLoss):
    r"""Debiased contrastive loss (DCL; not *decoupled* contrastive learning).

    Uniform in-batch negatives contain same-class samples with probability
    ``tau_plus``.  DCL corrects the negative term with the positive (M = 1):

    .. math::

        N g_a = \max\Big(\frac{\sum_{j\in\mathcal N(a)} e^{\ell_{aj}}
                 - \tau^+ N_a e^{\ell_{a,p(a)}}}{1-\tau^+},\; N_a e^{-1/t}\Big),
        \qquad \mathcal L = \frac{1}{2B}\sum_a -\log\frac{e^{\ell_{a,p(a)}}}{e^{\ell_{a,p(a)}} + N g_a},

    with ``N_a`` the number of negatives of anchor ``a`` (``2B - 2`` without a
    ``neg_mask``).  Evaluated in the stable shifted form of spec section B,
    which matches the exp-space official code in value and gradient and stays
    finite in float32 down to ``t = 0.001``.

    Parameters
    ----------
    temperature : float, default 0.5
        ``t > 0``.
    tau_plus : float, default 0.1
        Class prior ``tau+`` in ``[0, 1)``.  ``tau_plus = 0`` is exactly
        :class:`~batchsampler.losses.NTXentLoss`.  With the hard-negative
        BatchSampler the in-batch same-class rate rises, so a larger value than
        with uniform batches may be needed (watch ``clamp_rate``).
    clamp : bool, default True
        Apply the lower bound ``N e^{-1/t}`` (the theoretical minimum).  When it
        binds, that anchor's negatives get no gradient.  With ``clamp=False``
        a non-positive estimate makes the loss ``inf``/NaN, as in the official
        code; the clamp is never needed for ``tau_plus = 0``.
    reduction : {"mean", "sum", "none"}, default "mean"
        Mean over the 2B anchors.

    Attributes
    ----------
    last_diagnostics : dict[str, Tensor]
        ``"clamp_rate"``: fraction of anchors where the clamp was active.

    Raises
    ------
    TypeError
        Non-numeric hyperparameters.
    ValueError
        ``temperature <= 0``, ``tau_plus`` outside ``[0, 1)``, bad ``reduction``.

    References
    ----------
    C.-Y. Chuang, J. Robinson, L. Yen-Chen, A. Torralba, S. Jegelka.
    "Debiased Contrastive Learning." NeurIPS 2020, arXiv:2007.00224;
    code https://github.com/chingyaoc/DCL.
    """

    def __init__(
        self,
        temperature: float = 0.5,
        tau_plus: float = 0.1,
        clamp: bool = True,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__(temperature=temperature, reduction=reduction)
        self.tau_plus = check_range("tau_plus", tau_plus, 0.0, 1.0, high_open=True)
        if not isinstance(clamp, bool):
            raise TypeError(f"clamp must be a bool, got {type(clamp).__name__}")
        self.clamp = clamp

    def _log_negative_mass(self, pair: PairLogits) -> tuple[Tensor, dict[str, Tensor]]:
        """``log`` of the negative mass fed to the estimator, ``[2B]``, plus diagnostics."""
        return masked_logsumexp(pair.logits, pair.neg_valid), {}

    def _terms(self, pair: PairLogits) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        log_mass, diagnostics = self._log_negative_mass(pair)
        log_den, hit = debiased_log_denominator(
            pair.pos, log_mass, pair.num_neg, pair.temperature, self.tau_plus, self.clamp
        )
        rows = pair.has_neg
        diagnostics["clamp_rate"] = (hit & rows).sum().to(log_den.dtype) / rows.sum().clamp_min(1)
        return log_den - pair.pos, rows, diagnostics

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, tau_plus={self.tau_plus}, clamp={self.clamp}"
