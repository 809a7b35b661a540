"""Contrastive losses that pair with the hard-negative BatchSampler.

Implemented from the project's loss spec (``losses.md``); every loss is a
:class:`torch.nn.Module` called as ``loss(z1, z2, labels=None, neg_mask=None)``.

Public classes (registry name for ``get_loss`` in brackets):

* :class:`NTXentLoss` [``ntxent``] -- Chen et al., ICML 2020 (SimCLR).
* :class:`DebiasedContrastiveLoss` [``dcl``] -- Chuang et al., NeurIPS 2020.
* :class:`HardNegativeContrastiveLoss` [``hcl``] -- Robinson et al., ICLR 2021.
* :class:`BayesianContrastiveLoss` [``bcl``] -- Liu, Wang, Li, arXiv:2301.11673.
* :class:`HardSupervisedContrastiveLoss` [``hscl``] -- Jiang et al.,
  arXiv:2209.00078; needs ``labels``.
* :class:`PotentialSampleLoss` [``potential``] -- EXPERIMENTAL, after
  Dong et al., arXiv:2311.00358.
* :class:`RobustContrastiveObjective` (not registered; needs adversarial
  embeddings) -- optional, after Tran et al., arXiv:2311.09671.

``get_loss("scl")`` builds H-SCL with ``beta=0`` (the SCL of Jiang et al.,
which is *not* Khosla et al.'s SupCon); ``"infonce"`` is an alias of
``"ntxent"``.  ``DCL`` here is the *debiased* loss, not decoupled contrastive
learning; ``BCL`` is the Bayesian loss, not balanced contrastive learning.

Conventions
-----------
* **Inputs.**  Two views ``z1, z2`` of shape ``[B, d]`` (``B >= 2``), any scale;
  they are L2-normalised inside.  Row ``i`` of both views is a positive pair.
  The 2B anchors are ``cat(z1, z2)``; anchor ``a`` has partner ``(a + B) mod 2B``.
* **Reduction.**  ``reduction="mean"`` (default) averages over the 2B anchors,
  as the official DCL/HCL/BCL code and the SimCLR paper do.  Google's TF SimCLR
  returns twice this value; divide TF logs by 2 to compare.  H-SCL averages over
  positive pairs instead.  Anchors left without negatives (by ``neg_mask``, or a
  single-class batch for H-SCL) are left out of the mean.
* **Precision.**  Autocast is disabled inside the losses and inputs are upcast
  to float32 (float64 inputs stay float64).  All reductions are log-space
  (``logsumexp``), so the losses stay finite down to ``temperature=0.005`` in
  float32, where the exp-space official code overflows.
* **neg_mask.**  Optional bool ``[2B, 2B]`` (or instance-level ``[B, B]``):
  True where column ``b`` may be a negative of anchor ``a``.  ``N`` and all
  per-row statistics (HCL softmax, BCL ranks, H-SCL negatives) use the
  negatives that remain.
* **Diagnostics.**  After each call, ``loss.last_diagnostics`` holds detached
  0-dim tensors: ``clamp_rate`` (DCL/HCL), ``ess`` and ``ess_fraction``
  (effective sample size of the importance weights: HCL/BCL/H-SCL),
  ``mean_weight`` (BCL), ``num_pairs`` (H-SCL).
* ``cls.requires_labels`` tells an integration whether ``labels`` must be passed.

Distributed training
--------------------
Gather embeddings *with* gradients so every rank sees the global batch
(``N = 2 B_global - 2``) and remote embeddings still receive gradients::

    import torch
    import torch.distributed as dist
    from torch.distributed.nn.functional import all_gather

    z1_all = torch.cat(all_gather(z1), dim=0)      # [B_global, d], differentiable
    z2_all = torch.cat(all_gather(z2), dim=0)
    labels_all = None
    if labels is not None:                         # labels need no gradient
        parts = [torch.empty_like(labels) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, labels)
        labels_all = torch.cat(parts)
    loss = criterion(z1_all, z2_all, labels=labels_all, neg_mask=global_mask)

* Every rank must contribute the same ``B`` (``all_gather`` needs equal
  shapes; use ``drop_last=True``), and ``z1_all``/``z2_all``/``labels_all`` must
  use the same rank-major order, so global instance ``r * B + i`` is row ``i``
  of rank ``r``.
* A ``neg_mask`` must describe the *global* batch: ``[2 B_global, 2 B_global]``
  over ``cat(z1_all, z2_all)`` (or ``[B_global, B_global]`` over instances).
  Gather local masks' information (e.g. instance ids with ``dist.all_gather``)
  and build the global mask identically on every rank.
* Each rank then computes the same global loss.  The backward of
  ``torch.distributed.nn.functional.all_gather`` sums the gradients of all ranks
  into each local embedding, and DDP averages parameter gradients over ranks,
  so the parameters receive exactly the gradient of the global loss.  A plain
  ``dist.all_gather`` (no autograd) cuts gradients to remote embeddings.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from .base import ContrastiveLoss
from .bayesian import BayesianContrastiveLoss
from .debiased import DebiasedContrastiveLoss
from .hard_negative import HardNegativeContrastiveLoss
from .ntxent import NTXentLoss
from .potential import PotentialSampleLoss
from .robust import RobustContrastiveObjective
from .supervised import HardSupervisedContrastiveLoss

__all__ = [
    "LOSSES",
    "BayesianContrastiveLoss",
    "ContrastiveLoss",
    "DebiasedContrastiveLoss",
    "HardNegativeContrastiveLoss",
    "HardSupervisedContrastiveLoss",
    "NTXentLoss",
    "PotentialSampleLoss",
    "RobustContrastiveObjective",
    "get_loss",
    "loss_names",
]

#: Short names for a ``--loss`` option, mapped to the drop-in two-view losses.
LOSSES: dict[str, type[ContrastiveLoss]] = {
    "ntxent": NTXentLoss,
    "infonce": NTXentLoss,
    "dcl": DebiasedContrastiveLoss,
    "hcl": HardNegativeContrastiveLoss,
    "bcl": BayesianContrastiveLoss,
    "hscl": HardSupervisedContrastiveLoss,
    "potential": PotentialSampleLoss,
}

# names that are a registered class with fixed defaults
_PRESETS: dict[str, tuple[str, dict[str, Any]]] = {"scl": ("hscl", {"beta": 0.0})}


def _normalise_name(name: str) -> str:
    return name.strip().lower().replace("-", "").replace("_", "")


def loss_names() -> list[str]:
    """All names accepted by :func:`get_loss`, sorted (for ``argparse`` choices)."""
    return sorted([*LOSSES, *_PRESETS])


def get_loss(name: str, **kwargs: Any) -> nn.Module:
    """Build a loss from its short name.

    Parameters
    ----------
    name : str
        One of :func:`loss_names` (case-insensitive; ``-`` and ``_`` ignored,
        so ``"NT-Xent"`` and ``"h_scl"`` work).
    **kwargs
        Constructor arguments, e.g. ``temperature=0.2, tau_plus=0.1``.

    Returns
    -------
    torch.nn.Module
        A :class:`ContrastiveLoss` instance.

    Raises
    ------
    TypeError
        ``name`` is not a string, or a keyword is not accepted by the class.
    ValueError
        Unknown ``name`` (the message lists the valid names), or a bad
        hyperparameter value.

    Examples
    --------
    >>> loss = get_loss("hcl", temperature=0.5, beta=0.5)
    >>> type(loss).__name__, loss.beta, loss.tau_plus
    ('HardNegativeContrastiveLoss', 0.5, 0.1)
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    key = _normalise_name(name)
    if key in _PRESETS:
        key, preset = _PRESETS[key]
        kwargs = {**preset, **kwargs}
    if key not in LOSSES:
        raise ValueError(f"unknown loss name {name!r}; expected one of {loss_names()}")
    return LOSSES[key](**kwargs)
