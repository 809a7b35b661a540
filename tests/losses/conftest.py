"""Naive reference implementations for the loss tests.

They follow the exp-space official code (DCL/HCL/BCL ``image/main.py``,
H-SCL ``main/main.py``) row by row, so they share no code path with the
log-space library implementation.  They are exposed through the session fixture
``ref`` (a namespace) because the test directory is not a package.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor


def make_views(
    batch: int, dim: int, seed: int, dtype: torch.dtype = torch.float64, noise: float = 1.0
) -> tuple[Tensor, Tensor]:
    """Two views from a local generator: z2 = z1 + noise * eps, both requiring grad."""
    g = torch.Generator().manual_seed(seed)
    z1 = torch.randn(batch, dim, generator=g, dtype=torch.float64)
    z2 = z1 + noise * torch.randn(batch, dim, generator=g, dtype=torch.float64)
    return z1.to(dtype).requires_grad_(), z2.to(dtype).requires_grad_()


def value_and_grads(fn: Callable[[Tensor, Tensor], Tensor], z1: Tensor, z2: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Loss value and its gradients w.r.t. both views."""
    out = fn(z1, z2)
    g1, g2 = torch.autograd.grad(out, (z1, z2))
    return out.detach(), g1, g2


def assert_same(fa, fb, z1: Tensor, z2: Tensor, rtol: float = 1e-10, atol: float = 1e-12) -> None:
    """Assert two loss functions agree in value and in both gradients."""
    va, a1, a2 = value_and_grads(fa, z1, z2)
    vb, b1, b2 = value_and_grads(fb, z1, z2)
    torch.testing.assert_close(va, vb, rtol=rtol, atol=atol)
    torch.testing.assert_close(a1, b1, rtol=rtol, atol=atol)
    torch.testing.assert_close(a2, b2, rtol=rtol, atol=atol)


def _layout(z1: Tensor, z2: Tensor, t: float) -> tuple[Tensor, int]:
    z = torch.cat([F.normalize(z1, dim=1), F.normalize(z2, dim=1)])
    return z, z1.shape[0]


def _negatives(a: int, batch: int, neg_mask: Tensor | None) -> list[int]:
    n, p = 2 * batch, (a + batch) % (2 * batch)
    return [j for j in range(n) if j not in (a, p) and (neg_mask is None or bool(neg_mask[a, j]))]


def naive_ntxent(z1: Tensor, z2: Tensor, t: float, neg_mask: Tensor | None = None) -> Tensor:
    """Loop over anchors and columns: -log(pos / (pos + sum neg)), mean over anchors with negatives."""
    z, batch = _layout(z1, z2, t)
    losses = []
    for a in range(2 * batch):
        cols = _negatives(a, batch, neg_mask)
        if not cols:
            continue
        pos = torch.exp(z[a] @ z[(a + batch) % (2 * batch)] / t)
        den = pos
        for j in cols:
            den = den + torch.exp(z[a] @ z[j] / t)
        losses.append(-torch.log(pos / den))
    return torch.stack(losses).mean()


def _generic(z1, z2, t, neg_mask, ng_fn) -> Tensor:
    z, batch = _layout(z1, z2, t)
    losses = []
    for a in range(2 * batch):
        cols = _negatives(a, batch, neg_mask)
        if not cols:
            continue
        pos = torch.exp(z[a] @ z[(a + batch) % (2 * batch)] / t)
        neg = torch.exp(z[a] @ z[cols].T / t)
        losses.append(-torch.log(pos / (pos + ng_fn(pos, neg))))
    return torch.stack(losses).mean()


def official_dcl(z1, z2, t, tau_plus, clamp=True, neg_mask=None) -> Tensor:
    def ng(pos, neg):
        n = neg.shape[0]
        out = (-tau_plus * n * pos + neg.sum()) / (1 - tau_plus)
        return torch.clamp(out, min=n * math.e ** (-1 / t)) if clamp else out

    return _generic(z1, z2, t, neg_mask, ng)


def official_hcl(z1, z2, t, tau_plus, beta, clamp=True, detach=False, neg_mask=None) -> Tensor:
    def ng(pos, neg):
        n = neg.shape[0]
        imp = (beta * neg.log()).exp()
        if detach:
            imp = imp.detach()
        reweight = (imp * neg).sum() / imp.mean()
        out = (-tau_plus * n * pos + reweight) / (1 - tau_plus)
        return torch.clamp(out, min=n * math.e ** (-1 / t)) if clamp else out

    return _generic(z1, z2, t, neg_mask, ng)


def official_bcl(z1, z2, t, tau_plus, alpha, beta, eps=1e-3, normalize=False, neg_mask=None) -> Tensor:
    """Official BCL (pairwise ECDF, quadratic root) with the fudge as a parameter.

    With ``eps = 0`` and ``A = 0`` the official root is 0/0, so the linear
    branch ``u / b`` is used there (the limit).
    """

    def ng(pos, neg):
        n = neg.shape[0]
        cdf_u = (neg[None, :] <= neg[:, None]).sum(1).to(neg.dtype) / n
        tau_minus = 1 - tau_plus
        a = (1 - 2 * alpha) * (tau_minus - tau_plus) + eps
        b = 2 * (alpha * tau_minus + (1 - alpha) * tau_plus)
        cdf = cdf_u / b if a == 0 else (-b + torch.sqrt(b**2 + 4 * a * cdf_u)) / (2 * a)
        phi1, phi2 = 2 * (1 - cdf), 2 * cdf
        x_tn = alpha * phi1 + (1 - alpha) * phi2
        x_fn = (1 - alpha) * phi1 + alpha * phi2
        x_htn = (alpha * (1 - beta) * phi1 + (1 - alpha) * beta * phi2) / (
            alpha * (1 - beta) + (1 - alpha) * beta + eps
        )
        omega = (x_htn / (x_tn * (1 - tau_plus) + x_fn * tau_plus)).detach()
        if normalize:
            return n * (omega * neg).sum() / omega.sum()
        return (omega * neg).sum()

    return _generic(z1, z2, t, neg_mask, ng)


def official_hscl(z1, z2, labels, t, beta, detach=False, neg_mask=None) -> Tensor:
    """H-SCL per positive pair; N = number of (unsupervised) negatives of the anchor."""
    z, batch = _layout(z1, z2, t)
    y = torch.cat([labels, labels])
    losses = []
    for a in range(2 * batch):
        cols = _negatives(a, batch, neg_mask)
        others = [k for k in cols if y[k] != y[a]]
        if not others:
            continue
        neg = torch.exp(z[a] @ z[others].T / t)
        imp = torch.exp(beta * (z[a] @ z[others].T / t))
        if detach:
            imp = imp.detach()
        m = (imp * neg).sum() / imp.sum()
        for b in range(2 * batch):
            if b != a and y[b] == y[a]:
                pos = torch.exp(z[a] @ z[b] / t)
                losses.append(-torch.log(pos / (pos + len(cols) * m)))
    return torch.stack(losses).mean()


@pytest.fixture(scope="session")
def ref() -> SimpleNamespace:
    """Reference implementations and helpers (see module docstring)."""
    return SimpleNamespace(
        make_views=make_views,
        value_and_grads=value_and_grads,
        assert_same=assert_same,
        naive_ntxent=naive_ntxent,
        official_dcl=official_dcl,
        official_hcl=official_hcl,
        official_bcl=official_bcl,
        official_hscl=official_hscl,
    )
