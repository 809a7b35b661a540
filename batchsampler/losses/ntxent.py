"""NT-Xent / InfoNCE (SimCLR) on 2B views."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import ContrastiveLoss, PairLogits, Reduction

__all__ = ["NTXentLoss"]


class NTXentLoss(ContrastiveLoss):
    r"""Normalised temperature-scaled cross entropy (NT-Xent, InfoNCE).

    .. math::

        \ell_a = -\log \frac{e^{\ell_{a,p(a)}}}{e^{\ell_{a,p(a)}} + \sum_{j \in \mathcal N(a)} e^{\ell_{aj}}},
        \qquad \mathcal L = \frac{1}{2B} \sum_{a=1}^{2B} \ell_a ,

    with ``l_ab = z_a . z_b / t`` on the L2-normalised views and ``N(a)`` every
    view except ``a`` and its partner ``p(a)`` (minus what ``neg_mask``
    removes).  Computed as a cross entropy over logits whose excluded entries
    are ``-inf``, i.e. in log-space, in float32 even under autocast.

    Parameters
    ----------
    temperature : float, default 0.5
        ``t > 0``.  SimCLR uses 0.1 on ImageNet (batch 4096) and 0.5 on CIFAR;
        the DCL/HCL/BCL/H-SCL/BatchSampler code uses 0.5.
    reduction : {"mean", "sum", "none"}, default "mean"
        Mean over the 2B anchors (half of Google's TF SimCLR value).

    Attributes
    ----------
    last_diagnostics : dict[str, Tensor]
        ``"mean_num_negatives"``: mean negatives per anchor.

    Raises
    ------
    TypeError, ValueError
        Bad ``temperature``/``reduction`` here; bad inputs in ``forward``
        (see :class:`~batchsampler.losses.base.ContrastiveLoss`).

    References
    ----------
    T. Chen, S. Kornblith, M. Norouzi, G. Hinton. "A Simple Framework for
    Contrastive Learning of Visual Representations." ICML 2020, arXiv:2002.05709.

    Examples
    --------
    >>> loss = NTXentLoss(temperature=0.5)
    >>> z1, z2 = torch.randn(8, 16), torch.randn(8, 16)
    >>> loss(z1, z2).shape
    torch.Size([])
    """

    def __init__(self, temperature: float = 0.5, reduction: Reduction = "mean") -> None:
        super().__init__(temperature=temperature, reduction=reduction)

    def _terms(self, pair: PairLogits) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        partner = pair.partner
        keep = pair.neg_valid.clone()
        keep[torch.arange(keep.shape[0], device=keep.device), partner] = True
        logits = pair.logits.masked_fill(~keep, float("-inf"))
        values = F.cross_entropy(logits, partner, reduction="none")
        diagnostics = {"mean_num_negatives": pair.num_neg.mean()}
        return values, pair.has_neg, diagnostics
