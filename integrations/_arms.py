"""Settings shared by the training integrations: the bank space and the sampler-side options.

* The *bank space*: which embeddings of a step's two views the sampler's bank receives.
  NT-Xent spreads projection-head outputs nearly uniformly over the sphere, so in-batch cosine
  similarity in projection space is close to 0 whatever the sampler; the backbone's features
  (before the head) keep the structure the head discards.
* ``replacement`` and ``target_hardness``: options of the sampler's constructor set per run
  (``target_hardness``, in ``[0, 1]``, of :class:`batchsampler.BatchSampler` only: the relative
  hardness to hold, 0 for uniform batches and 1 for exact kNN batches).
* An *arm* of a comparison table is a sampler with these settings; :func:`arm_key` and
  :func:`arm_label` keep arms with different settings in different cells.

Records written before these settings existed lack their keys; they read as the defaults.
"""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = [
    "BANK_SPACES",
    "MAX_CANDIDATE_WALKS_HELP",
    "PER_STEP_BANKS",
    "StepCallback",
    "add_run_flags",
    "arm_key",
    "arm_label",
    "bank_rows",
    "call_on_step",
    "check_bank",
    "check_run_options",
    "check_target_flag",
    "epoch_hardness",
    "sampler_extras",
    "target_settings",
]

StepCallback = Callable[[int, int, Any, Any, Any], None]
"""``on_step(epoch, step, indices, model, sampler)`` of the training functions (``train_graphcl``,
``train_simclr``): called after every optimizer step and bank update, ``step`` counting from 0
within the epoch and ``indices`` the step's dataset indices (a tensor). The model is put back in
train mode after it, so a callback may encode in eval mode; training does not depend on it unless
it draws from torch's global generator or changes the model."""

BANK_SPACES = ("projection", "backbone", "both", "encoded")
"""Values of the ``bank`` setting:

* ``"projection"``: the L2-normalised projection-head outputs of both views, concatenated
  (``[B, 2 p]``);
* ``"backbone"``: the L2-normalised encoder features before the head, of both views,
  concatenated the same way (``[B, 2 f]``);
* ``"both"``: the ``"projection"`` rows and the ``"backbone"`` rows concatenated, each block
  scaled by ``1 / sqrt(2)`` (``[B, 2 p + 2 f]``), so a row has the norm of the one-space rows
  (``sqrt(2)``: every view's part is unit length) and its cosine similarities are the mean of
  the two spaces'.
* ``"encoded"``: no rows from the training steps; after every epoch the whole training set,
  un-augmented, is encoded by the current model in eval mode (backbone features) and stored.
  Rows written by training steps come from a model in train mode: batch normalisation centres
  each batch on its own statistics, which lowers the similarity of rows written together (the
  members of one batch) against rows of different batches, and the graph then avoids the very
  pairs the sampler put together. An eval-mode encoding has no such batch effect.
"""

PER_STEP_BANKS = ("projection", "backbone", "both")
"""The bank spaces filled from the training steps (``"encoded"`` is filled once per epoch)."""

DEFAULTS: dict[str, Any] = {
    "bank": "projection", "target_hardness": None, "replacement": False, "k": None, "m": None, "drift_epochs": 0,
    "warmup_epochs": 1, "max_candidate_walks": None,
}
"""The settings of a run that predates them (or leaves them alone)."""


def check_bank(bank: Any, name: str = "bank") -> str:
    """Return ``bank`` if it is one of :data:`BANK_SPACES`.

    Raises:
        ValueError: otherwise (the message names ``name``).
    """
    if not isinstance(bank, str) or bank not in BANK_SPACES:
        raise ValueError(f"{name} must be one of {list(BANK_SPACES)}, got {bank!r}")
    return bank


def check_run_options(config: Any) -> None:
    """Check a run config's ``bank``, ``replacement``, ``target_hardness``, ``drift_epochs`` and
    ``max_candidate_walks`` fields (those it has; the sampler checks ``max_candidate_walks``'s value).

    ``target_hardness`` is an option of the ``"batchsampler"`` sampler only: set with another
    sampler it would be silently meaningless, so it is refused.

    Raises:
        ValueError: on an unknown ``bank``, a ``target_hardness`` outside ``[0, 1]``, a
            ``target_hardness`` with ``config.sampler`` other than ``"batchsampler"``,
            ``drift_epochs < 0``, or a ``max_candidate_walks`` without a ``target_hardness``.
        TypeError: on a non-bool ``replacement``, a non-real ``target_hardness`` or a non-int
            ``drift_epochs``.
    """
    if hasattr(config, "bank"):
        check_bank(config.bank, "config.bank")
    drift = getattr(config, "drift_epochs", 0)
    if isinstance(drift, bool) or not isinstance(drift, numbers.Integral):
        raise TypeError(f"config.drift_epochs must be an int, got {type(drift).__name__}")
    if drift < 0:
        raise ValueError(f"config.drift_epochs must be >= 0, got {drift}")
    if not isinstance(config.replacement, bool):
        raise TypeError(f"config.replacement must be a bool, got {type(config.replacement).__name__}")
    target = config.target_hardness
    if target is None and getattr(config, "max_candidate_walks", None) is not None:
        raise ValueError("config.max_candidate_walks is an option of a target: set config.target_hardness too")
    if target is None:
        return
    if isinstance(target, bool) or not isinstance(target, numbers.Real):
        raise TypeError(f"config.target_hardness must be a real number or None, got {type(target).__name__}")
    if not 0.0 <= target <= 1.0:  # NaN fails too
        raise ValueError(f"config.target_hardness must be in [0, 1], got {target}")
    if config.sampler != "batchsampler":
        raise ValueError(f"config.target_hardness is an option of the 'batchsampler' sampler only, "
                         f"got it with sampler {config.sampler!r}")


MAX_CANDIDATE_WALKS_HELP = (
    "walk up to N candidates of the epoch's last choice when its candidate walks all leave the epoch outside "
    "the band's inner half (half the tolerance), until one lands in it (BatchSampler(max_candidate_walks=N); "
    "N = candidate_walks: none; default: the sampler's, 8 x candidate_walks)"
)
"""What ``--max-candidate-walks N`` does, for every command that has it."""


def add_run_flags(parser: Any, *, features: str | None, warmup: bool = True, target_warmup: int | None = None) -> None:
    """Add ``--bank`` (when the pipeline has bank spaces: ``features`` names its encoder's
    features, e.g. ``"GIN embeddings"``), ``--target-hardness``, ``--replacement``,
    ``--drift-epochs``, ``--max-candidate-walks`` and (with ``warmup``: pipelines whose bank is
    filled by a first epoch) ``--warmup-epochs`` to ``parser``; check them with
    :func:`check_target_flag` after parsing. With ``target_warmup`` (a pipeline whose config
    warms up longer before a target), ``--warmup-epochs`` defaults to ``None``: the config's
    default, ``target_warmup`` epochs for runs with a target and 1 for the others."""
    if features is not None:
        parser.add_argument(
            "--bank", choices=BANK_SPACES, default="projection",
            help=f"embeddings fed back to the sampler: projection-head outputs, {features} before the head, both, "
                 "or 'encoded' (the training set encoded in eval mode after every epoch) (default: %(default)s)",
        )
    parser.add_argument("--target-hardness", type=float, default=None, metavar="FLOAT",
                        help="relative hardness in [0, 1] the batchsampler runs hold (0: uniform, 1: kNN batches; "
                             "other samplers do not take it)")
    parser.add_argument("--replacement", action="store_true",
                        help="independent batches (replacement=True) for every sampler")
    parser.add_argument("--drift-epochs", type=int, default=0, metavar="N",
                        help="with --target-hardness: aim above the target by the mean gap between the last N "
                             "epochs as walked and as measured after them (default: 0, off)")
    parser.add_argument("--max-candidate-walks", type=int, default=None, metavar="N",
                        help=f"with --target-hardness: {MAX_CANDIDATE_WALKS_HELP}")
    if warmup:
        default = DEFAULTS["warmup_epochs"] if target_warmup is None else None
        which = (f"{default}" if target_warmup is None else
                 f"{target_warmup} for the batchsampler runs with --target-hardness, 1 for the others")
        parser.add_argument("--warmup-epochs", type=int, default=default, metavar="N",
                            help=f"uniform epochs before the first graph, for every sampler (default: {which})")


def check_target_flag(parser: Any, args: Any) -> None:
    """Command lines: stop with ``parser.error`` when ``--target-hardness`` is outside ``[0, 1]``
    or no run of ``--samplers`` would take it (it goes to the ``batchsampler`` runs only), or when
    ``--max-candidate-walks`` is below 1 or comes without a target."""
    target = args.target_hardness
    if getattr(args, "drift_epochs", 0) < 0:
        parser.error(f"--drift-epochs must be >= 0, got {args.drift_epochs}")
    walks = getattr(args, "max_candidate_walks", None)
    if walks is not None and (walks < 1 or target is None):
        parser.error(f"--max-candidate-walks must be >= 1 and goes with --target-hardness, got {walks}"
                     f"{'' if target is not None else ' without a target'}")
    warmup = getattr(args, "warmup_epochs", None)  # None: the config's default
    if warmup is not None and warmup < 1:
        parser.error(f"--warmup-epochs must be >= 1 (the first epoch fills the bank), got {args.warmup_epochs}")
    if target is None:
        return
    if not 0.0 <= target <= 1.0:
        parser.error(f"--target-hardness must be in [0, 1], got {target}")
    if "batchsampler" not in args.samplers:
        parser.error("--target-hardness is an option of the batchsampler sampler, which --samplers does not include")


def call_on_step(on_step: StepCallback | None, epoch: int, step: int, indices: Any, model: Any, sampler: Any) -> float:
    """Call ``on_step`` (if any) after a training step, put ``model`` back in train mode, and
    return the seconds it took (which the training functions leave out of ``train_seconds``)."""
    if on_step is None:
        return 0.0
    start = time.perf_counter()
    on_step(epoch, step, indices, model, sampler)
    model.train()
    return time.perf_counter() - start


def target_settings(sampler: str, target_hardness: float | None, max_candidate_walks: int | None) -> dict[str, Any]:
    """``{"target_hardness", "max_candidate_walks"}`` of one run of a grid: the given values for
    the ``"batchsampler"`` runs, ``None`` for the others (the options of a target, which only
    that sampler takes)."""
    if sampler != "batchsampler":
        return {"target_hardness": None, "max_candidate_walks": None}
    return {"target_hardness": target_hardness, "max_candidate_walks": max_candidate_walks}


def sampler_extras(config: Any) -> dict[str, Any]:
    """The constructor keywords of ``replacement``, ``target_hardness``, ``drift_epochs`` and
    ``max_candidate_walks`` for ``config``.

    ``replacement`` always (every sampler takes it); ``target_hardness`` and ``drift_epochs``
    only when a target is set (and so, after :func:`check_run_options`, only for the
    ``"batchsampler"`` sampler), and ``max_candidate_walks`` when it is set too.
    """
    extras: dict[str, Any] = {"replacement": config.replacement}
    if config.target_hardness is not None:
        extras["target_hardness"] = float(config.target_hardness)
        extras["drift_epochs"] = int(getattr(config, "drift_epochs", 0))
        if getattr(config, "max_candidate_walks", None) is not None:
            extras["max_candidate_walks"] = config.max_candidate_walks
    return extras


def bank_rows(bank: str, projections: Sequence[Any], features: Sequence[Any]) -> Any:
    """The bank rows ``[B, d]`` of one step in space ``bank`` (see :data:`BANK_SPACES`).

    Args:
        bank: one of :data:`BANK_SPACES`.
        projections: the views' projection-head outputs, each ``[B, p]`` (tensors).
        features: the views' encoder features before the head, each ``[B, f]``, in the same
            view order.

    Returns:
        A detached tensor: ``[B, V p]``, ``[B, V f]`` or ``[B, V (p + f)]`` for ``V`` views.

    Raises:
        ValueError: on an unknown ``bank``, or different numbers of projection and feature views.
    """
    import torch
    import torch.nn.functional as F

    check_bank(bank)
    if bank not in PER_STEP_BANKS:
        raise ValueError(f"bank {bank!r} has no per-step rows: it is filled once per epoch by the training loop")
    if len(projections) != len(features):
        raise ValueError(f"projections and features must hold the same views, got {len(projections)} and {len(features)}")

    def space(views: Sequence[Any]) -> Any:
        return torch.cat([F.normalize(view.detach(), dim=1) for view in views], dim=1)

    if bank == "projection":
        return space(projections)
    if bank == "backbone":
        return space(features)
    return torch.cat([space(projections), space(features)], dim=1) / math.sqrt(2.0)


def _setting(config: Mapping[str, Any], name: str) -> Any:
    return config.get(name, DEFAULTS[name])


def arm_key(config: Mapping[str, Any]) -> tuple:
    """``(sampler, bank, target_hardness, replacement, k, m, drift_epochs, warmup_epochs,
    max_candidate_walks)`` of a run's config dict, the key that tells arms apart (missing settings
    read as :data:`DEFAULTS`; ``k``/``m`` ``None``: scaled to the dataset)."""
    return (config["sampler"], _setting(config, "bank"), _setting(config, "target_hardness"),
            bool(_setting(config, "replacement")), _setting(config, "k"), _setting(config, "m"),
            int(_setting(config, "drift_epochs")), int(_setting(config, "warmup_epochs")),
            _setting(config, "max_candidate_walks"))


def arm_label(config: Mapping[str, Any]) -> str:
    """The sampler's name plus the settings that differ from :data:`DEFAULTS`, e.g.
    ``"batchsampler (bank=backbone, target=0.3, replacement, k=8)"``; just the name for defaults."""
    sampler, bank, target, replacement, k, m, drift, warmup, max_walks = arm_key(config)
    notes = []
    if bank != DEFAULTS["bank"]:
        notes.append(f"bank={bank}")
    if target is not None:
        notes.append(f"target={target:g}")
    if replacement:
        notes.append("replacement")
    notes += [f"{name}={value}" for name, value in (("k", k), ("m", m)) if value is not None]
    if drift:
        notes.append(f"drift={drift}")
    if warmup != DEFAULTS["warmup_epochs"]:
        notes.append(f"warmup={warmup}")
    if max_walks is not None:
        notes.append(f"max_walks={max_walks}")
    return f"{sampler} ({', '.join(notes)})" if notes else sampler


def epoch_hardness(
    sampler: Any, batches: Sequence[Sequence[int]], bank: Any, *, valid: Any = None, encoded: Any = None
) -> dict[str, Any]:
    """Per-epoch fields of a run record: relative hardness and the graph setting in use.

    ``relative_hardness`` (and ``relative_by_quarter``, per quarter of the epoch) puts the
    epoch's batches on the 0-1 scale of :mod:`batchsampler.hardness` (0: uniform batches, 1:
    exact kNN batches), measured in ``bank`` over its ``valid`` rows (``None``: no bank yet;
    the fields are then ``None``). ``encoded_relative_hardness`` is the same measure in
    ``encoded``, an eval-mode encoding of the whole training set by the model at the end of
    the epoch (a space every arm shares, free of the batch effects of rows written by training
    steps). ``graph_k`` / ``graph_m`` are those of the sampler's graph (``None`` without one):
    a ``target_hardness`` search changes them. ``planned_hardness`` and ``hardness_aim`` are
    the sampler's (:attr:`~batchsampler.BatchSampler.planned_hardness`: the epoch as walked, on
    the bank of its walk; ``None`` without a target): the gap between ``planned_hardness`` and
    ``relative_hardness`` is what training on the batches changed during the epoch.
    """
    import numpy as np

    graph = getattr(sampler, "graph", None)
    fields: dict[str, Any] = {
        "relative_hardness": None, "relative_by_quarter": None, "encoded_relative_hardness": None,
        "graph_k": None if graph is None else graph.build_params.get("k"),
        "graph_m": None if graph is None else graph.build_params.get("m"),
        "planned_hardness": getattr(sampler, "planned_hardness", None),
        "hardness_aim": getattr(sampler, "hardness_aim", None),
    }
    if not batches:
        return fields
    batches = [list(batch) for batch in batches]
    if bank is not None and (valid is None or int(np.count_nonzero(valid)) >= 2):
        profile = _profile(sampler, batches, bank, valid)
        fields["relative_hardness"] = _finite(profile["relative_hardness"])
        fields["relative_by_quarter"] = [_finite(value) for value in profile["by_part"]]
    if encoded is not None:
        fields["encoded_relative_hardness"] = _finite(_profile(sampler, batches, encoded, None)["relative_hardness"])
    return fields


def _profile(sampler: Any, batches: list[list[int]], embeddings: Any, valid: Any) -> dict[str, Any]:
    import numpy as np

    from batchsampler.hardness import epoch_profile

    embeddings = np.asarray(embeddings, dtype=np.float32)
    return epoch_profile(embeddings, batches, sampler.global_batch_size, np.random.default_rng(0), valid=valid)


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None
