"""Bayesian self-supervised contrastive loss (BCL) of Liu, Wang and Li."""

from __future__ import annotations

import torch
from torch import Tensor

from .base import (
    ContrastiveLoss,
    PairLogits,
    Reduction,
    effective_sample_size,
    masked_logsumexp,
)
from .validation import check_range

__all__ = ["BayesianContrastiveLoss", "bcl_importance_weights"]


def bcl_importance_weights(cdf: Tensor, alpha: float, beta: float, tau_plus: float, eps: float = 0.0) -> Tensor:
    r"""BCL importance weights ``omega`` from empirical-CDF values (spec section D).

    Parameters
    ----------
    cdf : Tensor
        Empirical CDF ``u`` of each negative's score within its anchor row,
        values in ``(0, 1]``; any shape.
    alpha, beta, tau_plus : float
        Location, concentration and class prior.
    eps : float, default 0.0
        The official code's ``1e-3`` fudge added to the quadratic coefficient
        ``A`` and to the ``x_HTN`` normaliser; ``0`` gives the exact form.

    Returns
    -------
    Tensor
        ``omega = x_HTN / (tau- x_TN + tau+ x_FN)``, same shape as ``cdf``.

    Notes
    -----
    ``U(Phi) = A Phi^2 + b Phi`` is inverted with the rationalised root
    ``Phi = 2u / (b + sqrt(b^2 + 4 A u))``, algebraically equal to the official
    ``(-b + sqrt(b^2 + 4 A u)) / (2A)`` but finite at ``A = 0`` (``alpha = 0.5``
    or ``tau_plus = 0.5``), where it reduces to the linear branch ``u / b``.
    """
    tau_minus = 1.0 - tau_plus
    a = (1.0 - 2.0 * alpha) * (tau_minus - tau_plus) + eps
    b = 2.0 * (alpha * tau_minus + (1.0 - alpha) * tau_plus)
    phi = 2.0 * cdf / (b + torch.sqrt((b * b + 4.0 * a * cdf).clamp_min(0.0)))
    phi1, phi2 = 2.0 * (1.0 - phi), 2.0 * phi
    x_tn = alpha * phi1 + (1.0 - alpha) * phi2
    x_fn = (1.0 - alpha) * phi1 + alpha * phi2
    x_htn = (alpha * (1.0 - beta) * phi1 + (1.0 - alpha) * beta * phi2) / (
        alpha * (1.0 - beta) + (1.0 - alpha) * beta + eps
    )
    return x_htn / (tau_minus * x_tn + tau_plus * x_fn)


class BayesianContrastiveLoss(ContrastiveLoss):
    r"""Bayesian self-supervised contrastive loss (BCL).

    Keeps uniform in-batch negatives and importance-reweights them toward a
    designed distribution of *hard true* negatives.  For each anchor row the
    empirical CDF ``u_aj`` of the negative scores (rank / ``N_a``) is mapped
    through the inverse of the unlabeled score CDF
    ``U(Phi) = (1-2 alpha)(tau- - tau+) Phi^2 + 2(alpha tau- + (1-alpha) tau+) Phi``
    to ``Phi_aj``, giving the weight

    .. math::

        \omega_{aj} = \frac{x_{HTN}}{\tau^- x_{TN} + \tau^+ x_{FN}},\qquad
        N g_a = \sum_{j\in\mathcal N(a)} \omega_{aj} e^{\ell_{aj}},\qquad
        \mathcal L = \frac{1}{2B}\sum_a -\log\frac{e^{\ell_{a,p(a)}}}{e^{\ell_{a,p(a)}} + N g_a}

    (see spec section D for ``x_TN, x_FN, x_HTN``).  ``omega`` depends only on
    ranks, so it carries no gradient and does not depend on ``t``.  ``omega > 0``,
    so no clamp is needed.  Ranks use a per-row sort and ``searchsorted``
    (``O(N log N)`` memory ``O(N)`` per row) instead of the official
    ``[2B, N, N]`` comparison; ties count as ``<=``, as in the official code.

    Parameters
    ----------
    temperature : float, default 0.5
        ``t > 0``.
    tau_plus : float, default 0.1
        Class prior in ``[0, 1)``.
    alpha : float, default 0.5
        Location parameter in ``[0, 1]``: probability that a positive scores
        above a negative (the encoder's AUC; the paper uses ``[0.5, 1]``).
    beta : float, default 1.0
        Concentration parameter in ``[0, 1]`` (paper: ``[0.5, 1]``); ``0.5`` is
        pure debiasing, ``1`` concentrates on the hardest true negatives.
        ``alpha = beta = 0.5`` (with ``eps = 0``) is exactly NT-Xent.
    normalize_weights : bool, default False
        Use the self-normalised ``N_a * sum(omega e^l) / sum(omega)`` (as in the
        authors' ``MSE.py``) instead of the training code's plain sum.
    eps : float, default 0.0
        ``1e-3`` reproduces the official code's fudges (about ``-2e-3`` in the
        loss at ``alpha = beta = 0.5``); ``0`` is the exact form.
    reduction : {"mean", "sum", "none"}, default "mean"
        Mean over the 2B anchors.

    Attributes
    ----------
    last_diagnostics : dict[str, Tensor]
        ``"mean_weight"``: mean ``omega``; ``"ess"`` / ``"ess_fraction"``:
        effective sample size of the row-normalised weights and its ratio to
        ``N_a``.

    Raises
    ------
    TypeError
        Non-numeric hyperparameters or non-bool flags.
    ValueError
        ``temperature <= 0``; ``tau_plus`` outside ``[0, 1)``; ``alpha`` or
        ``beta`` outside ``[0, 1]``; ``eps < 0``; or ``alpha, beta`` such that
        ``alpha (1-beta) + (1-alpha) beta + eps == 0`` (all weights undefined).

    Notes
    -----
    The authors' "empirical estimation" schedule for ``alpha`` uses
    ground-truth labels (kNN ROC-AUC), so it is not self-supervised; schedule
    ``alpha`` from outside by setting the attribute between steps.

    References
    ----------
    B. Liu, B. Wang, T. Li. "Bayesian Self-Supervised Contrastive Learning."
    arXiv:2301.11673; code https://github.com/liubin06/BCL.
    """

    def __init__(
        self,
        temperature: float = 0.5,
        tau_plus: float = 0.1,
        alpha: float = 0.5,
        beta: float = 1.0,
        normalize_weights: bool = False,
        eps: float = 0.0,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__(temperature=temperature, reduction=reduction)
        self.tau_plus = check_range("tau_plus", tau_plus, 0.0, 1.0, high_open=True)
        self.alpha = check_range("alpha", alpha, 0.0, 1.0)
        self.beta = check_range("beta", beta, 0.0, 1.0)
        self.eps = check_range("eps", eps, 0.0, None)
        if self.alpha * (1 - self.beta) + (1 - self.alpha) * self.beta + self.eps == 0.0:
            raise ValueError(
                f"alpha={alpha!r} and beta={beta!r} make the hard-negative target degenerate "
                "(alpha*(1-beta) + (1-alpha)*beta == 0); use eps > 0 or other values"
            )
        if not isinstance(normalize_weights, bool):
            raise TypeError(f"normalize_weights must be a bool, got {type(normalize_weights).__name__}")
        self.normalize_weights = normalize_weights

    @staticmethod
    def empirical_cdf(logits: Tensor, valid: Tensor) -> Tensor:
        """Per-row ECDF ``#{k valid: l_ak <= l_aj} / #valid`` (garbage where ``valid`` is False)."""
        with torch.no_grad():
            x = logits.masked_fill(~valid, float("inf"))
            ordered, _ = torch.sort(x, dim=1)
            counts = torch.searchsorted(ordered, x, right=True)
            return counts.to(logits.dtype) / valid.sum(1, keepdim=True).clamp_min(1).to(logits.dtype)

    def _terms(self, pair: PairLogits) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        valid, rows = pair.neg_valid, pair.has_neg
        with torch.no_grad():
            cdf = self.empirical_cdf(pair.logits.detach(), valid).clamp(0.0, 1.0)
            omega = bcl_importance_weights(cdf, self.alpha, self.beta, self.tau_plus, self.eps)
            # omega can be exactly 0 (e.g. the hardest rank at alpha = 1); tiny keeps log finite
            log_omega = torch.log(omega.clamp_min(torch.finfo(omega.dtype).tiny))
        log_mass = masked_logsumexp(log_omega + pair.logits, valid)
        if self.normalize_weights:
            log_mass = log_mass + torch.log(pair.num_neg.clamp_min(1)) - masked_logsumexp(log_omega, valid)
        values = torch.logaddexp(pair.pos, log_mass) - pair.pos
        ess, frac = effective_sample_size(log_omega, valid, rows)
        n_valid = (valid & rows[:, None]).sum().clamp_min(1)
        diagnostics = {
            "mean_weight": (omega * (valid & rows[:, None])).sum() / n_valid,
            "ess": ess,
            "ess_fraction": frac,
        }
        return values, rows, diagnostics

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, tau_plus={self.tau_plus}, alpha={self.alpha}, beta={self.beta}, "
            f"normalize_weights={self.normalize_weights}, eps={self.eps}"
        )
