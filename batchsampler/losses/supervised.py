"""Hard-negative supervised contrastive loss (H-SCL; beta = 0 is SCL) of Jiang et al."""

from __future__ import annotations

import torch
from torch import Tensor

from .base import (
    ContrastiveLoss,
    PairLogits,
    Reduction,
    effective_sample_size,
    masked_log_softmax,
    masked_logsumexp,
)
from .validation import check_range

__all__ = ["HardSupervisedContrastiveLoss"]


class HardSupervisedContrastiveLoss(ContrastiveLoss):
    r"""Hard-negative supervised contrastive loss (H-SCL); ``beta = 0`` gives SCL.

    With labels repeated for both views, anchor ``a`` has the positives
    ``P(a) = {b != a : y_b = y_a}`` (its partner view included) and the
    negatives ``A(a) = {k : y_k != y_a}`` (minus what ``neg_mask`` removes).
    Negatives are drawn from the class-conditional distribution tilted by
    ``exp(beta l)``:

    .. math::

        w_{ak} = \frac{e^{\beta\ell_{ak}}}{\sum_{k'\in A(a)} e^{\beta\ell_{ak'}}},\quad
        M_a = \sum_{k\in A(a)} w_{ak} e^{\ell_{ak}},\quad
        \mathcal L = \frac{1}{\sum_a |P(a)|}\sum_a\sum_{b\in P(a)}
                     -\log\frac{e^{\ell_{ab}}}{e^{\ell_{ab}} + N_a M_a},

    where ``N_a`` is the anchor's count of negatives in the unsupervised sense
    (``2B - 2`` without ``neg_mask``), as in the official code.  The denominator
    holds only the current positive and ``N_a M_a`` -- the other positives are
    *not* included, which differs from SupCon (Khosla et al. 2020).  Computed as
    ``logaddexp(l_ab, log N_a + logsumexp(log_softmax(beta l) + l)) - l_ab`` with
    masks applied in the log domain.

    If all labels in the batch are distinct, H-SCL equals
    ``HardNegativeContrastiveLoss(tau_plus=0, beta=beta)`` and SCL equals
    :class:`~batchsampler.losses.NTXentLoss`.

    Parameters
    ----------
    temperature : float, default 0.5
        ``t > 0`` (the official code hard-codes 0.5).
    beta : float, default 0.5
        Hardness ``>= 0`` (``main.py`` default 0.5; the README mentions 5).
        ``beta = 0`` is SCL.
    detach_weights : bool, default False
        Stop gradients through ``w``.  The official code's ``gradient_imp``
        defaults to attached, but it detaches whenever ``beta < 1``; set this to
        True to reproduce that branch.
    reduction : {"mean", "sum", "none"}, default "mean"
        ``"mean"`` averages over all positive pairs whose anchor has at least
        one negative (anchors of frequent classes weigh more; an anchor whose
        class fills the batch has no negatives and is skipped instead of giving
        NaN).  ``"none"`` returns a ``[2B, 2B]`` matrix holding each counted
        pair's loss at ``(a, b)`` and 0 elsewhere.

    Attributes
    ----------
    last_diagnostics : dict[str, Tensor]
        ``"num_pairs"``: counted positive pairs; ``"ess"`` / ``"ess_fraction"``:
        effective sample size of ``w`` over ``A(a)`` and its ratio to ``|A(a)|``.

    Raises
    ------
    TypeError
        Non-numeric hyperparameters; non-integer ``labels``.
    ValueError
        ``temperature <= 0``, ``beta < 0``; in ``forward`` missing ``labels`` or
        ``labels`` not of shape ``[B]``.

    References
    ----------
    R. Jiang, T. Nguyen, P. Ishwar, S. Aeron. "Supervised Contrastive Learning
    with Hard Negative Samples." arXiv:2209.00078;
    code https://github.com/rjiang03/H-SCL.
    """

    requires_labels = True

    def __init__(
        self,
        temperature: float = 0.5,
        beta: float = 0.5,
        detach_weights: bool = False,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__(temperature=temperature, reduction=reduction)
        self.beta = check_range("beta", beta, 0.0, None)
        if not isinstance(detach_weights, bool):
            raise TypeError(f"detach_weights must be a bool, got {type(detach_weights).__name__}")
        self.detach_weights = detach_weights

    def _terms(self, pair: PairLogits) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        assert pair.labels is not None  # guaranteed by requires_labels
        y = pair.labels
        same = y[:, None] == y[None, :]
        eye = torch.eye(same.shape[0], dtype=torch.bool, device=same.device)
        positives = same & ~eye
        others = ~same & pair.neg_valid
        has_other = others.any(1)
        tilt = self.beta * pair.logits
        if self.detach_weights:
            tilt = tilt.detach()
        log_w = masked_log_softmax(tilt, others)
        log_neg = torch.log(pair.num_neg.clamp_min(1)) + masked_logsumexp(log_w + pair.logits, others)
        values = torch.logaddexp(pair.logits, log_neg[:, None]) - pair.logits
        counted = positives & has_other[:, None]
        ess, frac = effective_sample_size(log_w, others, has_other)
        diagnostics = {"num_pairs": counted.sum(), "ess": ess, "ess_fraction": frac}
        return values, counted, diagnostics

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, beta={self.beta}, detach_weights={self.detach_weights}"
