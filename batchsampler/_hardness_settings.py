"""Settings of ``BatchSampler(target_hardness=...)``: their defaults and their checks.

Kept apart from :mod:`batchsampler._hardness_target` (what a target does at run time) so that
the constructor's validation reads in one place.
"""

from __future__ import annotations

import numbers
from typing import Any

from ._validation import check_int, check_probability

__all__ = [
    "DEFAULT_DRIFT_EPOCHS", "DEFAULT_RESEED_CANDIDATES", "SIMULATED_BATCHES", "check_hardness_settings",
    "default_candidate_walks", "default_max_candidate_walks",
]

SIMULATED_BATCHES = 256
"""Batches a simulated epoch measures hardness on (see ``hardness._spread``); also the epoch
length from which one candidate walk is enough."""
_MAX_CANDIDATE_WALKS = 8
RESCUE_WALKS_PER_CANDIDATE = 8
"""Walks of an epoch's last group that misses its aim, per candidate walk, by default (see
:func:`default_max_candidate_walks`)."""

DEFAULT_RESEED_CANDIDATES = 32
"""Candidates of a guided re-seed when ``target_hardness`` is set and ``reseed_candidates`` is not."""

DEFAULT_DRIFT_EPOCHS = 0
"""Measured epochs whose drift (planned minus measured hardness) a target corrects for by default:
none. On GraphCL/MUTAG and SimCLR the gap is mostly noise and one large first walked epoch, and
correcting for the last 3 epochs widened the spread of the measured epochs (see the README)."""


def default_candidate_walks(num_batches: int) -> int:
    """Candidate walks of a group when ``target_hardness`` is set and ``candidate_walks`` is not:
    ``clip(ceil(256 / num_batches), 1, 8)``.

    An epoch of ``n`` batches averages ``n`` noisy batch means: from 256 batches on, that
    average is precise and one walk is enough; shorter epochs (a few batches: small datasets,
    large batches) choose among up to 8 candidate walks.
    """
    return int(min(_MAX_CANDIDATE_WALKS, max(1, -(-SIMULATED_BATCHES // max(num_batches, 1)))))


def default_max_candidate_walks(candidate_walks: int) -> int:
    """Most candidate walks of an epoch's last group when ``max_candidate_walks`` is not set:
    ``8 * candidate_walks`` when ``candidate_walks > 1``, else 1 (no extra walks).

    Extra walks are walked only when the group's ``candidate_walks`` all leave the epoch outside
    the tolerance (see :meth:`~batchsampler._candidate_walks.CandidateWalksMixin._closest_walk`),
    so epochs that already land on the target walk exactly as with ``candidate_walks`` alone.
    Long epochs (one candidate walk) measure nothing and stay as cheap as without a target's
    choice.
    """
    return RESCUE_WALKS_PER_CANDIDATE * candidate_walks if candidate_walks > 1 else 1


def check_hardness_settings(
    target_hardness: Any, hardness_tolerance: Any, calibration_builds: Any, reseed_candidates: Any, backend: str,
    candidate_walks: Any = None, drift_epochs: Any = DEFAULT_DRIFT_EPOCHS, max_candidate_walks: Any = None,
) -> tuple[float | None, float, int, int, int | None, int, int | None]:
    """The checked ``(target_hardness, hardness_tolerance, calibration_builds, reseed_candidates,
    candidate_walks, drift_epochs, max_candidate_walks)``; ``candidate_walks`` stays ``None``
    with a target (its default depends on the epoch's length, see
    :func:`default_candidate_walks`) and is 1 without one; ``max_candidate_walks`` stays
    ``None`` (:func:`default_max_candidate_walks`) unless given. Whether it is at least ``candidate_walks`` is
    checked once the epoch's length is known.

    Raises:
        ValueError: ``target_hardness`` outside ``[0, 1]`` or with a ``backend`` other than
            ``"random"``, ``hardness_tolerance`` outside ``(0, 1]``, ``calibration_builds < 1``,
            ``reseed_candidates < 0``, ``candidate_walks < 1``, ``candidate_walks > 1`` or
            ``max_candidate_walks > 1`` without a ``target_hardness`` (there is nothing to
            choose by), ``max_candidate_walks < 1``, or ``drift_epochs < 0``.
        TypeError: non-integer ``calibration_builds``, ``reseed_candidates``, ``candidate_walks``,
            ``max_candidate_walks`` or ``drift_epochs``.
    """
    if target_hardness is not None:
        target_hardness = check_probability("target_hardness", target_hardness)
        if backend != "random":
            raise ValueError(
                f"target_hardness tunes the random backend's candidates m: use backend='random', got {backend!r}"
            )
    if isinstance(hardness_tolerance, bool) or not isinstance(hardness_tolerance, numbers.Real) or not (
        0 < hardness_tolerance <= 1
    ):
        raise ValueError(f"hardness_tolerance must be a number in (0, 1], got {hardness_tolerance!r}")
    calibration_builds = check_int("calibration_builds", calibration_builds, low=1)
    if reseed_candidates is None:
        reseed_candidates = DEFAULT_RESEED_CANDIDATES if target_hardness is not None else 0
    reseed_candidates = check_int("reseed_candidates", reseed_candidates, low=0)
    drift_epochs = check_int("drift_epochs", drift_epochs, low=0)
    if candidate_walks is None:
        candidate_walks = None if target_hardness is not None else 1
    else:
        candidate_walks = check_int("candidate_walks", candidate_walks, low=1)
        if candidate_walks > 1 and target_hardness is None:
            raise ValueError(
                f"candidate_walks > 1 chooses walks by target_hardness, which is None; got {candidate_walks}"
            )
    if max_candidate_walks is not None:
        max_candidate_walks = check_int("max_candidate_walks", max_candidate_walks, low=1)
        if max_candidate_walks > 1 and target_hardness is None:
            raise ValueError(
                f"max_candidate_walks > 1 chooses walks by target_hardness, which is None; got {max_candidate_walks}"
            )
    return target_hardness, float(hardness_tolerance), calibration_builds, reseed_candidates, candidate_walks, (
        drift_epochs), max_candidate_walks
