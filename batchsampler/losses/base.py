"""Shared machinery of the two-view contrastive losses.

Every loss in :mod:`batchsampler.losses` uses the SimCLR batch layout of the
official DCL/HCL/BCL/H-SCL code (spec ``losses.md`` section 1):

* two views ``z1, z2`` of shape ``[B, d]`` are L2-normalised and stacked into
  ``z = cat(z1, z2)`` of shape ``[2B, d]``;
* anchor ``a`` (``0 <= a < 2B``) has the partner view ``p(a) = (a + B) mod 2B``;
* logits are ``l_ab = z_a . z_b / temperature``;
* the negatives of ``a`` are all columns except ``a`` and ``p(a)``
  (``N = 2B - 2``), optionally restricted further by a boolean ``neg_mask``.
  ``N`` and every per-row statistic are taken over the negatives that remain,
  so a mask (or an all-gathered global batch) needs no other change.

This module holds the float32 upcast, the masked log-space reductions, the
pair layout and the base class :class:`ContrastiveLoss`; argument checks live
in :mod:`batchsampler.losses.validation`.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .validation import (
    check_choice,
    check_labels,
    check_neg_mask,
    check_range,
    check_views,
)

__all__ = [
    "ContrastiveLoss",
    "PairLogits",
    "Reduction",
    "build_pair_logits",
    "compute_dtype",
    "debiased_log_denominator",
    "effective_sample_size",
    "masked_log_softmax",
    "masked_logsumexp",
    "no_autocast",
]

Reduction = Literal["mean", "sum", "none"]
_REDUCTIONS: tuple[str, ...] = ("mean", "sum", "none")


# -------------------------------------------------------------------------- numerics
def compute_dtype(*tensors: Tensor) -> torch.dtype:
    """float64 if any input is float64 (keeps identity tests exact), else float32."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def no_autocast(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """Context that disables autocast on ``device`` so the loss runs in float32.

    Under bfloat16/float16 autocast the matmul and ``exp`` would otherwise run
    in half precision, where ``exp(1/t)`` overflows already at ``t = 0.07``.
    """
    try:
        return torch.autocast(device_type=device.type, enabled=False)
    except (RuntimeError, ValueError):  # device type without autocast support
        return contextlib.nullcontext()


def masked_logsumexp(x: Tensor, mask: Tensor, dim: int = -1) -> Tensor:
    """``logsumexp`` of ``x`` over the entries where ``mask`` is True.

    Rows without any True entry get a finite dummy value (never ``-inf``) so
    that no NaN can reach the backward pass; callers must exclude those rows.
    """
    x = x.masked_fill(~mask, float("-inf"))
    x = x.masked_fill(~mask.any(dim, keepdim=True), 0.0)
    return torch.logsumexp(x, dim)


def masked_log_softmax(x: Tensor, mask: Tensor, dim: int = -1) -> Tensor:
    """``log_softmax`` over the True entries of ``mask``; masked entries are ``-inf``.

    Masking happens after any scaling of ``x`` by the caller, so ``0 * -inf``
    (the NaN of the official code at ``beta = 0``) cannot occur.
    """
    x = x.masked_fill(~mask, float("-inf"))
    x = x.masked_fill(~mask.any(dim, keepdim=True), 0.0)
    return torch.log_softmax(x, dim)


def effective_sample_size(log_w: Tensor, mask: Tensor, rows: Tensor) -> tuple[Tensor, Tensor]:
    """Mean Kish effective sample size of per-row weights, and its mean ratio to the count.

    ``log_w`` are unnormalised log-weights; only ``mask`` entries count and only
    ``rows`` (bool ``[R]``) enter the mean.  ESS = (sum w)^2 / sum w^2.
    """
    with torch.no_grad():
        lw = log_w.masked_fill(~mask, float("-inf")).masked_fill(~mask.any(-1, keepdim=True), 0.0)
        ess = torch.exp(2 * torch.logsumexp(lw, -1) - torch.logsumexp(2 * lw, -1))
        count = mask.sum(-1).clamp_min(1).to(ess.dtype)
        n = rows.sum().clamp_min(1)
        return (ess * rows).sum() / n, (ess / count * rows).sum() / n


def debiased_log_denominator(
    pos: Tensor,
    log_mass: Tensor,
    num_neg: Tensor,
    temperature: float,
    tau_plus: float,
    clamp: bool = True,
) -> tuple[Tensor, Tensor]:
    """Stable ``log(pos + Ng)`` of the DCL/HCL estimator (spec section B).

    ``Ng = max((M - tau_plus * N * pos) / (1 - tau_plus), N * exp(-1/t))`` with
    ``M = exp(log_mass)`` the (possibly reweighted) negative mass.  Everything
    is evaluated relative to ``c = max(l_pos, log_mass)`` so that ``p`` and the
    mass lie in ``(0, 1]``; this is exact, not an approximation.

    Returns the log-denominator ``[R]`` and a bool ``[R]`` telling where the
    clamp was active (those rows get no gradient through their negatives).
    With ``tau_plus == 0`` the estimator is a sum of positive terms, so the clamp
    can never bind mathematically and is skipped; the result is then exactly the
    NT-Xent denominator.
    """
    if tau_plus == 0.0:
        return torch.logaddexp(pos, log_mass), torch.zeros_like(pos, dtype=torch.bool)
    c = torch.maximum(pos, log_mass).detach()
    p = torch.exp(pos - c)
    ng = (torch.exp(log_mass - c) - tau_plus * num_neg * p) / (1.0 - tau_plus)
    hit = torch.zeros_like(pos, dtype=torch.bool)
    if clamp:
        floor = num_neg * torch.exp(-1.0 / temperature - c)
        hit = ng < floor
        ng = torch.maximum(ng, floor)
    # without the clamp a non-positive estimate gives log(<=0): inf/NaN, as in the official code
    return torch.log(p + ng) + c, hit


# ----------------------------------------------------------------------- pair logits
@dataclass(frozen=True)
class PairLogits:
    """The 2B-view similarity layout shared by all losses.

    Attributes
    ----------
    logits : Tensor, ``[2B, 2B]``
        ``z_a . z_b / t`` in the compute dtype; the diagonal is *not* masked.
    pos : Tensor, ``[2B]``
        ``l_{a, p(a)}``, the logit of the partner view.
    neg_valid : Tensor, bool ``[2B, 2B]``
        True where column ``b`` is a negative of anchor ``a`` (not ``a``, not
        ``p(a)``, allowed by ``neg_mask``).
    num_neg : Tensor, ``[2B]``
        Number of negatives per anchor, in the compute dtype.
    has_neg : Tensor, bool ``[2B]``
        ``num_neg > 0``; anchors without negatives are left out of every mean.
    labels : Tensor or None, ``[2B]``
        Labels repeated for both views.
    batch_size : int
        ``B``.
    temperature : float
        ``t``.
    """

    logits: Tensor
    pos: Tensor
    neg_valid: Tensor
    num_neg: Tensor
    has_neg: Tensor
    labels: Tensor | None
    batch_size: int
    temperature: float

    @property
    def partner(self) -> Tensor:
        """Index ``p(a)`` of each anchor's partner view, ``[2B]`` long."""
        idx = torch.arange(2 * self.batch_size, device=self.logits.device)
        return (idx + self.batch_size) % (2 * self.batch_size)


def build_pair_logits(
    z1: Tensor,
    z2: Tensor,
    temperature: float,
    labels: Tensor | None = None,
    neg_mask: Tensor | None = None,
) -> PairLogits:
    """Normalise, upcast and build :class:`PairLogits` (inputs assumed checked)."""
    dtype = compute_dtype(z1, z2)
    batch = z1.shape[0]
    z = torch.cat([F.normalize(z1.to(dtype), dim=1), F.normalize(z2.to(dtype), dim=1)], dim=0)
    logits = (z @ z.T) / temperature
    n = 2 * batch
    idx = torch.arange(n, device=z.device)
    partner = (idx + batch) % n
    structural = torch.ones(n, n, dtype=torch.bool, device=z.device)
    structural[idx, idx] = False
    structural[idx, partner] = False
    neg_valid = structural if neg_mask is None else structural & neg_mask
    num_neg = neg_valid.sum(1).to(dtype)
    return PairLogits(
        logits=logits,
        pos=logits[idx, partner],
        neg_valid=neg_valid,
        num_neg=num_neg,
        has_neg=num_neg > 0,
        labels=None if labels is None else torch.cat([labels, labels]),
        batch_size=batch,
        temperature=temperature,
    )


# ------------------------------------------------------------------------ base class
class ContrastiveLoss(nn.Module):
    """Base class of the two-view contrastive losses.

    Subclasses implement :meth:`_terms`; this class validates the inputs,
    disables autocast, upcasts to float32 (float64 stays float64), builds the
    :class:`PairLogits`, reduces and records :attr:`last_diagnostics`.

    Parameters
    ----------
    temperature : float, default 0.5
        Softmax temperature ``t > 0``.
    reduction : {"mean", "sum", "none"}, default "mean"
        ``"mean"`` averages over the 2B anchors (the official DCL/HCL/BCL
        convention and the SimCLR paper's ``1/(2N) sum``; Google's TF SimCLR
        reports twice this value).  Anchors left without any negative by
        ``neg_mask`` are excluded from the mean.  ``"none"`` returns ``[2B]``
        per-anchor values (0 for excluded anchors).

    Attributes
    ----------
    requires_labels : bool
        Class attribute; True when ``forward`` needs ``labels``.
    last_diagnostics : dict[str, Tensor]
        Detached 0-dim tensors from the latest forward (see each subclass).

    Raises
    ------
    TypeError, ValueError
        On bad hyperparameters (here) or bad inputs (in ``forward``); messages
        name the offending argument.
    """

    requires_labels: ClassVar[bool] = False

    def __init__(self, temperature: float = 0.5, reduction: Reduction = "mean") -> None:
        super().__init__()
        self.temperature = check_range("temperature", temperature, 0.0, None, low_open=True)
        self.reduction: Reduction = check_choice("reduction", reduction, _REDUCTIONS)  # type: ignore[assignment]
        self.last_diagnostics: dict[str, Tensor] = {}

    def forward(
        self,
        z1: Tensor,
        z2: Tensor,
        labels: Tensor | None = None,
        neg_mask: Tensor | None = None,
    ) -> Tensor:
        """Compute the loss.

        Parameters
        ----------
        z1, z2 : Tensor, ``[B, d]``, floating point
            The two views (any scale; they are L2-normalised here).  Row ``i``
            of ``z1`` and row ``i`` of ``z2`` are a positive pair.  ``B >= 2``.
        labels : Tensor, ``[B]`` integer, optional
            Class labels; required by supervised losses, otherwise checked and
            ignored.
        neg_mask : Tensor, bool ``[2B, 2B]`` or ``[B, B]``, optional
            True where column ``b`` may serve as a negative of anchor ``a``
            (rows/columns index ``cat(z1, z2)``).  A ``[B, B]`` mask is an
            instance-level mask applied to both views.  Self and partner entries
            are ignored.

        Returns
        -------
        Tensor
            Scalar (``"mean"``/``"sum"``) or per-anchor values (``"none"``),
            float32, or float64 for float64 inputs.

        Raises
        ------
        TypeError
            Non-tensor or wrongly typed ``z1``, ``z2``, ``labels``, ``neg_mask``.
        ValueError
            Shape mismatch, non-2-D views, ``B < 2``, wrongly shaped ``labels``
            or ``neg_mask``, or missing ``labels`` for a supervised loss.
        """
        z1, z2 = check_views(z1, z2)
        batch, device = z1.shape[0], z1.device
        if labels is None:
            if self.requires_labels:
                raise ValueError(f"labels are required by {type(self).__name__} (shape [B] integer)")
        else:
            labels = check_labels(labels, batch, device)
        if neg_mask is not None:
            neg_mask = check_neg_mask(neg_mask, batch, device)
        with no_autocast(device):
            pair = build_pair_logits(z1, z2, self.temperature, labels, neg_mask)
            values, counted, diagnostics = self._terms(pair)
            out = self._reduce(values, counted)
        self.last_diagnostics = {k: v.detach() for k, v in diagnostics.items()}
        return out

    def _terms(self, pair: PairLogits) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """Return per-term losses, a bool mask of the terms that count, diagnostics."""
        raise NotImplementedError

    def _reduce(self, values: Tensor, counted: Tensor) -> Tensor:
        values = torch.where(counted, values, torch.zeros_like(values))
        if self.reduction == "none":
            return values
        total = values.sum()
        if self.reduction == "sum":
            return total
        return total / counted.sum().clamp_min(1).to(values.dtype)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, reduction={self.reduction!r}"
