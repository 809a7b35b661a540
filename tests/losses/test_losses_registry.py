"""The LOSSES registry and get_loss used by the integrations' --loss option."""

from __future__ import annotations

import pytest

import batchsampler.losses as losses
from batchsampler.losses import (
    LOSSES,
    BayesianContrastiveLoss,
    DebiasedContrastiveLoss,
    HardNegativeContrastiveLoss,
    HardSupervisedContrastiveLoss,
    NTXentLoss,
    PotentialSampleLoss,
    get_loss,
    loss_names,
)


def test_registry_maps_short_names_to_classes():
    assert LOSSES["ntxent"] is NTXentLoss
    assert LOSSES["dcl"] is DebiasedContrastiveLoss
    assert LOSSES["hcl"] is HardNegativeContrastiveLoss
    assert LOSSES["bcl"] is BayesianContrastiveLoss
    assert LOSSES["hscl"] is HardSupervisedContrastiveLoss
    assert LOSSES["potential"] is PotentialSampleLoss
    assert "robust" not in LOSSES  # needs adversarial views, not a drop-in


@pytest.mark.parametrize("name", loss_names())
def test_every_name_builds_a_working_loss(name, ref):
    loss = get_loss(name, temperature=0.2)
    assert loss.temperature == 0.2
    z1, z2 = ref.make_views(4, 3, 91)
    labels = ref.make_views(4, 1, 92)[0].detach().gt(0).long().squeeze(1) if loss.requires_labels else None
    assert loss(z1, z2, labels=labels).dim() == 0


def test_names_are_normalised_and_kwargs_forwarded():
    loss = get_loss("H-CL".replace("-", "_").upper(), tau_plus=0.05, beta=0.5)
    assert isinstance(loss, HardNegativeContrastiveLoss) and loss.tau_plus == 0.05 and loss.beta == 0.5
    assert isinstance(get_loss("NT-Xent"), NTXentLoss)
    assert isinstance(get_loss(" InfoNCE "), NTXentLoss)


def test_scl_preset_is_hscl_with_beta_zero():
    scl = get_loss("scl")
    assert isinstance(scl, HardSupervisedContrastiveLoss) and scl.beta == 0.0
    assert get_loss("scl", beta=0.3).beta == 0.3


def test_unknown_name_lists_choices():
    with pytest.raises(ValueError, match=r"unknown loss name 'supcon'.*'bcl'.*'scl'"):
        get_loss("supcon")
    with pytest.raises(TypeError, match="name must be a str"):
        get_loss(3)


def test_bad_kwargs_raise():
    with pytest.raises(TypeError):
        get_loss("ntxent", tau_plus=0.1)
    with pytest.raises(ValueError, match="tau_plus"):
        get_loss("dcl", tau_plus=1.0)


def test_requires_labels_flag():
    assert [n for n in loss_names() if LOSSES.get(n, HardSupervisedContrastiveLoss).requires_labels] == [
        "hscl",
        "scl",
    ]


def test_public_api_exports():
    for name in losses.__all__:
        assert hasattr(losses, name)
    assert "all_gather" in losses.__doc__ and "neg_mask" in losses.__doc__
