"""EXPERIMENTAL: "mining of potential samples" (Dong, Long, Li, arXiv 2311.00358).

Only the paper's abstract was available; the rules below are this library's
design (spec section F), not the paper's equations.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from .base import ContrastiveLoss, PairLogits, Reduction, masked_logsumexp
from .validation import check_choice, check_range

__all__ = ["PotentialSampleLoss"]

Weighting = Literal["soft", "hard"]


class PotentialSampleLoss(ContrastiveLoss):
    r"""EXPERIMENTAL multi-positive InfoNCE with mined positives and band-pass negatives.

    .. warning::
        Experimental.  Inspired by "Rethinking Samples Selection for
        Contrastive Learning: Mining of Potential Samples" (Dong, Long, Li,
        arXiv:2311.00358), whose exact equations, weighting and selection rules
        are unknown (abstract only, no official code).  What is implemented is
        this library's approximation (spec section F); expect it to change.

    For each anchor ``a``:

    1. **Mined positives.**  The ``num_mined_positives`` views of other
       instances most similar to ``a`` (detached selection, ignoring
       ``neg_mask``) become extra positives ``m``.  The other view of a mined
       instance is dropped from the negatives as well.  Weights: the augmented
       partner gets 1 and the mined positives share ``mined_weight`` -- by a
       softmax of their logits (``"soft"``) or equally (``"hard"``); the
       weights are then normalised to sum to 1 (``pi_ab``, detached).
    2. **Band-pass negatives.**  Of the remaining negatives (``pool``, size
       ``N_a``), only those whose logit lies between the row's
       ``negative_quantiles = (q_lo, q_hi)`` are kept: above ``q_hi`` are likely
       false negatives, below ``q_lo`` are uninformative.  The mass is rescaled
       so it still estimates ``N_a`` times the mean:
       ``Ng_a = N_a * mean_{kept} e^{l_aj}``.
    3. ``loss_a = sum_b pi_ab * (-log(e^{l_ab} / (e^{l_ab} + Ng_a)))``, averaged
       over the 2B anchors.

    With ``num_mined_positives = 0`` and ``negative_quantiles = (0, 1)`` this is
    exactly NT-Xent.

    Parameters
    ----------
    temperature : float, default 0.5
        ``t > 0``.
    num_mined_positives : int, default 1
        Mined positives per anchor, ``>= 0`` (fewer if the batch is too small).
    mined_weight : float, default 0.5
        Total weight ``>= 0`` of the mined positives relative to the partner view.
    positive_weighting : {"soft", "hard"}, default "soft"
        How ``mined_weight`` is split among the mined positives.
    negative_quantiles : tuple of float, default (0.1, 0.95)
        ``0 <= q_lo < q_hi <= 1``; quantiles use the "lower"/"higher" rule, so
        at least one negative is always kept.
    reduction : {"mean", "sum", "none"}, default "mean"
        Mean over the 2B anchors.

    Attributes
    ----------
    last_diagnostics : dict[str, Tensor]
        ``"kept_fraction"``: mean fraction of the pool kept by the band;
        ``"mined_per_anchor"``: mean number of mined positives.

    Raises
    ------
    TypeError
        Non-numeric hyperparameters, non-int ``num_mined_positives``.
    ValueError
        ``temperature <= 0``, negative ``num_mined_positives`` or
        ``mined_weight``, bad ``positive_weighting``, bad ``negative_quantiles``.

    References
    ----------
    H. Dong, X. Long, Y. Li. "Rethinking Samples Selection for Contrastive
    Learning: Mining of Potential Samples." arXiv:2311.00358, 2023.
    """

    def __init__(
        self,
        temperature: float = 0.5,
        num_mined_positives: int = 1,
        mined_weight: float = 0.5,
        positive_weighting: Weighting = "soft",
        negative_quantiles: tuple[float, float] = (0.1, 0.95),
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__(temperature=temperature, reduction=reduction)
        if isinstance(num_mined_positives, bool) or not isinstance(num_mined_positives, int):
            raise TypeError(f"num_mined_positives must be an int, got {type(num_mined_positives).__name__}")
        if num_mined_positives < 0:
            raise ValueError(f"num_mined_positives must be >= 0, got {num_mined_positives}")
        self.num_mined_positives = num_mined_positives
        self.mined_weight = check_range("mined_weight", mined_weight, 0.0, None)
        self.positive_weighting: Weighting = check_choice(  # type: ignore[assignment]
            "positive_weighting", positive_weighting, ("soft", "hard")
        )
        if not isinstance(negative_quantiles, (tuple, list)) or len(negative_quantiles) != 2:
            raise ValueError(f"negative_quantiles must be a pair (q_lo, q_hi), got {negative_quantiles!r}")
        q_lo = check_range("negative_quantiles[0]", negative_quantiles[0], 0.0, 1.0)
        q_hi = check_range("negative_quantiles[1]", negative_quantiles[1], 0.0, 1.0)
        if not q_lo < q_hi:
            raise ValueError(f"negative_quantiles must satisfy q_lo < q_hi, got {negative_quantiles!r}")
        self.negative_quantiles = (q_lo, q_hi)

    def _mine(self, pair: PairLogits) -> Tensor:
        """Bool ``[2B, 2B]`` of mined positive columns per anchor (no gradient)."""
        n = pair.logits.shape[0]
        mined = torch.zeros(n, n, dtype=torch.bool, device=pair.logits.device)
        k = min(self.num_mined_positives, n - 2)
        if k == 0:
            return mined
        idx = torch.arange(n, device=mined.device)
        candidates = torch.ones_like(mined)
        candidates[idx, idx] = False
        candidates[idx, pair.partner] = False
        scores = pair.logits.detach().masked_fill(~candidates, float("-inf"))
        top = scores.topk(k, dim=1).indices
        return mined.scatter(1, top, True)

    def _band(self, logits: Tensor, pool: Tensor) -> Tensor:
        """Keep pool entries between the row quantiles (lower/higher rule, no gradient)."""
        q_lo, q_hi = self.negative_quantiles
        x = logits.masked_fill(~pool, float("inf"))
        ordered, _ = torch.sort(x, dim=1)
        last = (pool.sum(1, keepdim=True) - 1).clamp_min(0)
        lo_idx = torch.floor(q_lo * last.to(logits.dtype)).long()
        hi_idx = torch.ceil(q_hi * last.to(logits.dtype)).long()
        lo = ordered.gather(1, lo_idx)
        hi = ordered.gather(1, hi_idx)
        return pool & (logits >= lo) & (logits <= hi)

    def _terms(self, pair: PairLogits) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        n = pair.logits.shape[0]
        idx = torch.arange(n, device=pair.logits.device)
        partner = pair.partner
        with torch.no_grad():
            mined = self._mine(pair)
            # a mined view's twin shows the same instance, so it cannot stay a negative
            twins = mined[:, (idx + pair.batch_size) % n]
            pool = pair.neg_valid & ~mined & ~twins
            keep = self._band(pair.logits.detach(), pool)
            num_pool = pool.sum(1).to(pair.logits.dtype)
            num_keep = keep.sum(1).to(pair.logits.dtype)
            # positive weights: partner 1, mined share mined_weight
            weights = torch.zeros_like(pair.logits)
            if mined.any():
                if self.positive_weighting == "soft":
                    share = torch.softmax(pair.logits.detach().masked_fill(~mined, float("-inf")), dim=1)
                    share = torch.nan_to_num(share, nan=0.0)
                else:
                    share = mined.to(weights.dtype) / mined.sum(1, keepdim=True).clamp_min(1)
                weights = self.mined_weight * share * mined
            weights[idx, partner] = 1.0
            weights = weights / weights.sum(1, keepdim=True)
        log_ng = (
            torch.log(num_pool.clamp_min(1)) - torch.log(num_keep.clamp_min(1)) + masked_logsumexp(pair.logits, keep)
        )
        pair_loss = torch.logaddexp(pair.logits, log_ng[:, None]) - pair.logits
        positive = weights > 0
        values = (weights * pair_loss.masked_fill(~positive, 0.0)).sum(1)
        rows = num_keep > 0
        diagnostics = {
            "kept_fraction": (num_keep / num_pool.clamp_min(1) * rows).sum() / rows.sum().clamp_min(1),
            "mined_per_anchor": mined.sum(1).to(pair.logits.dtype).mean(),
        }
        return values, rows, diagnostics

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, num_mined_positives={self.num_mined_positives}, "
            f"mined_weight={self.mined_weight}, positive_weighting={self.positive_weighting!r}, "
            f"negative_quantiles={self.negative_quantiles}"
        )
