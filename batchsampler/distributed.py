"""Distributed training over ``torch.distributed``: one global batch stream, one slice per rank.

Every rank runs the same sampler with the same seed and computes the same global batches of
``batch_size * world_size`` indices; rank ``r`` yields ``batch[r::world_size]``. The global
batch is therefore one hard-to-distinguish set, split across ranks. ``update`` all-gathers the
embeddings of every rank's batch so that all banks, and hence all graphs, stay identical.

Collectives on the training process group happen only in the main thread, in calls that every
rank makes in the same order (``update``, blocking ``refresh``, ``refresh_from``, the sampler's
constructor). Background graph builds are sharded too: each rank computes ``1 / world_size`` of
the rows in its build thread and the ranks exchange them over a gloo group the graph sampler
creates for itself in its constructor (:class:`batchsampler._build_group.BuildGroup`), never over
the training group.
Ranks on one node share the resulting table in shared memory (:mod:`batchsampler._shared`).
Set ``BATCHSAMPLER_BUILD_GROUP=0`` on every rank to do without that group (each rank then builds
whole graphs in the background), ``BATCHSAMPLER_SHARED_MEMORY=0`` to keep tables private, and
``BATCHSAMPLER_TABLE_REUSE=0`` to make a new shared table at every build instead of reusing the
previous graph's (less memory between builds, more CPU per build).

**Arguments that must match.** The constructor compares, across ranks, every argument that
shapes the batch stream or the graph (seed, N, batch size, k, m, restart probability, backend,
index parameters, refresh schedule, ...). They are compared by a 128-bit hash of a canonical
text of each value, so any value is accepted, integers of any size included (``seed=2**64``
works as on one process). A difference raises the same ``ValueError`` on every rank, naming the
first differing argument and its value on each rank, e.g. ``k must be identical on every rank,
got 10 on rank 0 and 20 on rank 1``.

**update() is a collective.** Every rank must call ``update`` once per step, with its own
batch, and every rank must call a blocking ``refresh`` (and ``refresh_from``) at the same
points. Each such call starts with one small exchange in which the ranks tell each other what
they are doing and how many ``update`` calls they have made. So when the ranks are out of step
but all still communicate (one rank called ``update`` twice where another called it once and
then refreshed, or ranks reached the same call with different ``update`` counts) every rank
raises the same error, naming each rank and the call it is at, e.g. ``update() calls out of
step across ranks: rank 0 is at call 5, rank 1 at call 4``. What cannot be detected is a rank
that stops making collective calls: if one rank skips ``update`` (for example it leaves the loop
early, or catches an exception and carries on) while the others call it, the others wait in the
all-gather until the process group's timeout (``init_process_group(timeout=...)``, 30 minutes by
default with NCCL) and the job then fails with torch's timeout error, not with one of ours.
Every rank must therefore run the same number of steps: use ``drop_last`` consistently, and make
a rank that fails a step fail the whole job rather than skip ``update``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import numbers
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.distributed as dist

from ._validation import to_index_array, to_numpy_2d

if TYPE_CHECKING:
    from ._build_group import BuildGroup

__all__ = ["DistributedContext"]

logger = logging.getLogger(__name__)

# Every control exchange is one all-gather of an int64 header [operation, a, b, c], whatever the
# operation, so that two ranks in different calls still pair up and can tell each other so.
_OP_IDENTICAL, _OP_UPDATE, _OP_CHECK, _OP_ROWS = 1, 2, 3, 4
# The sampler's build group (see BuildGroup): its creation on the training group, then the
# phases of one background build on the build group itself.
_OP_GROUP, _OP_BUILD, _OP_SHARE, _OP_RESERVE, _OP_FILL, _OP_FILLED = 5, 6, 7, 8, 9, 10
_OP_TABLE, _OP_MAPPED = 11, 12
_HEADER = 4
_MAX_SHOWN = 80  # characters of a value shown in an error message


def _digest(text: str, words: int = 1) -> list[int]:
    """``words`` signed 64-bit words of blake2b(text): stable across processes and runs."""
    raw = hashlib.blake2b(text.encode("utf-8"), digest_size=8 * words).digest()
    return [int.from_bytes(raw[8 * i : 8 * i + 8], "little", signed=True) for i in range(words)]


def _name(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', type(obj).__qualname__)}"


def _canonical(value: Any) -> str:
    """A text that is equal on two ranks exactly when the values are (never a memory address).

    Numbers compare by value (``1 == 1.0 == np.int64(1)``, integers of any size), sequences
    element-wise, mappings and sets regardless of order, arrays by dtype, shape and bytes,
    classes and functions by qualified name, other objects by ``repr`` unless that is the
    default one (which holds an address), in which case by type.
    """
    if value is None:
        return "None"
    if isinstance(value, (bool, np.bool_)):
        return f"b:{bool(value)}"
    if isinstance(value, numbers.Integral):
        return f"i:{int(value)}"
    if isinstance(value, numbers.Real):
        number = float(value)
        if math.isfinite(number) and number.is_integer():
            return f"i:{int(number)}"
        return f"f:{number!r}"
    if isinstance(value, str):
        return "s:" + json.dumps(value)
    if isinstance(value, (bytes, bytearray)):
        return "y:" + bytes(value).hex()
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_canonical(item) for item in value) + "]"
    if isinstance(value, (set, frozenset)):
        return "{" + ",".join(sorted(_canonical(item) for item in value)) + "}"
    if isinstance(value, Mapping):
        items = sorted(f"{_canonical(key)}:{_canonical(item)}" for key, item in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, np.ndarray):
        data = np.ascontiguousarray(value)
        body = hashlib.blake2b(data.tobytes(), digest_size=16).hexdigest() if data.dtype != object else (
            _canonical(data.tolist())
        )
        return f"a:{data.dtype.str}:{data.shape}:{body}"
    if isinstance(value, np.dtype):
        return f"d:{value.str}"
    if isinstance(value, type) or callable(value):
        return f"t:{_name(value)}"
    if type(value).__repr__ is object.__repr__:
        return f"o:{_name(type(value))}"
    return f"r:{_name(type(value))}:{value!r}"


def _safe_canonical(value: Any) -> str:
    # Must never raise: a rank that raised here would leave the others waiting.
    try:
        return _canonical(value)
    except Exception:  # noqa: BLE001  (a broken __repr__ or __eq__)
        return f"o:{_name(type(value))}"


def _shown(value: Any) -> str:
    try:
        if isinstance(value, np.generic):
            value = value.item()
        text = repr(value)
    except Exception:  # noqa: BLE001
        text = f"<{type(value).__name__}>"
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


def _ranks_text(ranks: list[int]) -> str:
    """``rank 3``, ``ranks 0, 1`` or ``ranks 0-7`` (consecutive runs of 3+ as ranges)."""
    if len(ranks) == 1:
        return f"rank {ranks[0]}"
    runs: list[str] = []
    start = previous = ranks[0]
    for rank in [*ranks[1:], None]:
        if rank is not None and rank == previous + 1:
            previous = rank
            continue
        if previous - start >= 2:
            runs.append(f"{start}-{previous}")
        else:
            runs.extend(str(r) for r in range(start, previous + 1))
        if rank is not None:
            start = previous = rank
    return "ranks " + ", ".join(runs)


def _grouped(per_rank: list[Any]) -> list[tuple[Any, list[int]]]:
    """Distinct values of ``per_rank`` in order of first appearance, each with its ranks."""
    groups: dict[Any, list[int]] = {}
    for rank, value in enumerate(per_rank):
        groups.setdefault(value, []).append(rank)
    return list(groups.items())


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _per_rank_text(per_rank: list[Any], template: str, first: str | None = None) -> str:
    """E.g. ``10 on rank 0 and 20 on rank 1`` for template ``"{value} on {ranks}"``.

    ``{is}`` and ``{has}`` in a template agree with the number of ranks; ``first`` replaces the template for the first
    group (e.g. to say the verb once: "rank 0 is at call 5, rank 1 at call 4").
    """
    parts = []
    for index, (value, ranks) in enumerate(_grouped(per_rank)):
        pattern = first if index == 0 and first is not None else template
        one = len(ranks) == 1
        words = {"is": "is" if one else "are", "has": "has" if one else "have"}
        parts.append(pattern.format(value=value, ranks=_ranks_text(ranks), **words))
    return _join(parts)


@dataclass(frozen=True)
class DistributedContext:
    """Rank, world size and process group of the sampler (``world_size == 1``: not distributed)."""

    rank: int = 0
    world_size: int = 1
    group: Any = None

    @classmethod
    def detect(cls, distributed: bool | None) -> DistributedContext:
        """The context for ``distributed`` (``None``: on when torch.distributed is initialised).

        Raises:
            ValueError: if ``distributed`` is True but torch.distributed is not initialised.
        """
        initialised = dist.is_available() and dist.is_initialized()
        if distributed is None:
            distributed = initialised
        if not distributed:
            return cls()
        if not initialised:
            raise ValueError("distributed=True needs torch.distributed.init_process_group() first")
        return cls(rank=dist.get_rank(), world_size=dist.get_world_size(), group=dist.group.WORLD)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def local_slice(self, batch: list[int]) -> list[int]:
        """This rank's share of a global batch (strided, so shares are equal in size)."""
        return batch[self.rank :: self.world_size] if self.enabled else batch

    def _device(self) -> torch.device:
        if dist.get_backend(self.group) == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")

    # ------------------------------------------------------------------ control exchanges

    def _gather_objects(self, obj: Any) -> list[Any]:
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, obj, group=self.group)
        return gathered

    def _exchange(self, op: int, a: int, b: int, c: int, doing: str) -> list[tuple[int, int, int, int]]:
        """All-gather every rank's header ``(op, a, b, c)``; raise on every rank if ops differ.

        ``doing`` says in words what this rank is doing; it is sent only when the ranks turn out
        to be in different calls, to name each rank's call in the error.
        """
        header = torch.tensor([op, a, b, c], dtype=torch.int64, device=self._device())
        gathered = [torch.empty(_HEADER, dtype=torch.int64, device=header.device) for _ in range(self.world_size)]
        dist.all_gather(gathered, header, group=self.group)
        headers = [tuple(int(x) for x in g.tolist()) for g in gathered]
        if len({h[0] for h in headers}) > 1:
            # Every rank sees the same headers, so every rank takes this branch and raises.
            doings = self._gather_objects(doing)
            raise RuntimeError(
                "ranks are out of step: "
                + _per_rank_text(doings, "{ranks} {is} {value}")
                + ". Every rank must make the same collective calls in the same order: update() at "
                "every step, blocking refresh() and refresh_from() at the same points, and the "
                "same samplers constructed"
            )
        return headers

    def check_identical(self, **values: Any) -> None:
        """Raise the same ``ValueError`` on every rank if any of ``values`` differs between ranks.

        Values may be of any type (see the module docstring); integers of any size are fine.
        The common case costs one all-gather of four int64 per rank; only on a mismatch are the
        values themselves exchanged, to name the first differing one.
        """
        if not self.enabled:
            return
        canonical = {name: _safe_canonical(value) for name, value in values.items()}
        text = "\n".join(f"{name}={canonical[name]}" for name in sorted(canonical))
        high, low = _digest(text, words=2)
        headers = self._exchange(_OP_IDENTICAL, len(canonical), high, low, "constructing a sampler")
        if all(h == headers[0] for h in headers):
            return
        local = [(name, canonical[name], _shown(value)) for name, value in values.items()]
        everyone: list[list[tuple[str, str, str]]] = self._gather_objects(local)
        names: list[str] = []
        for rank_values in everyone:
            names.extend(name for name, _, _ in rank_values if name not in names)
        tables = [{name: (canon, shown) for name, canon, shown in rank_values} for rank_values in everyone]
        for name in names:
            per_rank = [table.get(name, (None, "nothing")) for table in tables]
            if len({canon for canon, _ in per_rank}) > 1:
                shown_by_canon = {}
                for canon, shown in per_rank:
                    shown_by_canon.setdefault(canon, shown)
                values_text = _per_rank_text([shown_by_canon[canon] for canon, _ in per_rank], "{value} on {ranks}")
                raise ValueError(f"{name} must be identical on every rank, got {values_text}")
        raise ValueError("sampler arguments must be identical on every rank")  # a hash collision: 2**-128

    def check_in_step(self, what: str, count: int, *, where: str = "a blocking refresh()") -> None:
        """Raise on every rank unless every rank has made ``count`` calls of ``what`` so far.

        Called where the ranks must be at the same point (e.g. ``check_in_step("update",
        bank.updates)`` at a blocking refresh). A collective: every rank must call it.

        Raises:
            RuntimeError: if the counts differ (naming each rank's count), or if another rank
                is in a different collective call.
        """
        if not self.enabled:
            return
        count = int(count)
        (label,) = _digest(f"{what}\n{where}")
        doing = f"in {where} after {count} {what}() calls"
        headers = self._exchange(_OP_CHECK, count, label, 0, doing)
        if len({h[2] for h in headers}) > 1:
            doings = self._gather_objects(doing)
            raise RuntimeError(f"ranks are out of step: {_per_rank_text(doings, '{ranks} {is} {value}')}")
        counts = [h[1] for h in headers]
        if len(set(counts)) > 1:
            raise RuntimeError(
                f"{what}() calls out of step across ranks at {where}: {what}() was called "
                + _per_rank_text(counts, "{value} times on {ranks}")
                + f" (every rank must call {what}() at every step)"
            )

    def new_build_group(self) -> BuildGroup | None:
        """A private gloo group for background graph builds (``None`` when not distributed).

        A collective on this (the training) group: every rank must call it at the same point,
        the graph sampler's constructor. It starts with the usual header exchange, so ranks
        that are elsewhere (e.g. constructing another kind of sampler) raise instead of waiting.
        The new group gets this group's timeout (torch's default for new groups is 30 minutes).

        With the environment variable ``BATCHSAMPLER_BUILD_GROUP=0`` (on every rank) no group is
        made and background builds are whole-graph builds on every rank, as before sharding.
        """
        if not self.enabled or os.environ.get("BATCHSAMPLER_BUILD_GROUP", "1").strip() == "0":
            return None
        from ._build_group import BuildGroup

        self._exchange(_OP_GROUP, 0, 0, 0, "creating a graph sampler's build group")
        group = dist.new_group(backend="gloo", timeout=_group_timeout(self.group))
        return BuildGroup(DistributedContext(dist.get_rank(group), dist.get_world_size(group), group))

    # ------------------------------------------------------------------ data exchanges

    def all_gather_rows(self, array: np.ndarray) -> np.ndarray:
        """Concatenate every rank's ``array`` along axis 0 (row counts may differ), in rank order.

        Raises:
            ValueError: on every rank if the arrays differ in dtype or trailing shape.
            RuntimeError: on every rank if another rank is in a different collective call.
        """
        if not self.enabled:
            return array
        local_array = np.ascontiguousarray(array)
        layout = f"{local_array.dtype.str}{tuple(local_array.shape[1:])}"
        (code,) = _digest(layout)
        headers = self._exchange(
            _OP_ROWS, local_array.shape[0], code, 0,
            "in an all-gather of rows (a sharded graph build or refresh_from())",
        )
        if len({h[2] for h in headers}) > 1:
            shown = [f"{dtype} rows of shape {shape}" for dtype, shape in self._gather_objects(
                (str(local_array.dtype), tuple(local_array.shape[1:]))
            )]
            raise ValueError(
                "arrays to all-gather must have the same dtype and row shape on every rank, got "
                + _per_rank_text(shown, "{value} on {ranks}")
            )
        device = self._device()
        local = torch.from_numpy(local_array).to(device)
        sizes = [h[1] for h in headers]
        padded = torch.zeros((max(sizes), *local.shape[1:]), dtype=local.dtype, device=device)
        padded[: local.shape[0]] = local
        gathered = [torch.empty_like(padded) for _ in range(self.world_size)]
        dist.all_gather(gathered, padded, group=self.group)
        return torch.cat([g[:n] for g, n in zip(gathered, sizes)]).cpu().numpy()

    def gather_update(self, indices: Any, embeddings: Any, call_index: int = 0) -> tuple[Any, Any]:
        """All ranks' ``(indices, embeddings)`` of one ``update`` call, concatenated in rank order.

        ``call_index`` is the number of ``update`` calls this rank made before (``bank.updates``);
        ranks at different calls raise the same ``RuntimeError``, naming each rank's call.
        Embeddings travel as float32, or as float64 when any rank passes float64.

        Raises:
            ValueError: this rank's own validation error on the rank that failed, and ``update
                failed on another rank`` on the others; nothing is stored anywhere.
            RuntimeError: if the ranks are out of step (see the module docstring).
        """
        if not self.enabled:
            return indices, embeddings
        call_index = int(call_index)
        # Validate locally, then agree on the outcome, so that a bad call raises on every rank
        # instead of leaving the others waiting in the all-gather.
        error: Exception | None = None
        rows = values = None
        try:
            rows = to_index_array("indices", indices, np.iinfo(np.int64).max)
            values = to_numpy_2d("embeddings", embeddings)
            if values.shape[0] != rows.size:
                raise ValueError(
                    f"embeddings must have one row per index: got {values.shape[0]} rows for {rows.size} indices"
                )
        except (TypeError, ValueError) as caught:
            error = caught
        dim = -1 if values is None or error is not None else values.shape[1]
        wide = int(error is None and values.dtype == np.float64)
        headers = self._exchange(_OP_UPDATE, call_index, dim, wide, f"in update() at call {call_index}")
        calls = [h[1] for h in headers]
        if len(set(calls)) > 1:
            raise RuntimeError(
                "update() calls out of step across ranks: "
                + _per_rank_text(calls, "{ranks} at call {value}", first="{ranks} {is} at call {value}")
                + " (calls counted from 0; every rank must call update() at every step)"
            )
        if error is not None:
            raise error
        dims = [h[2] for h in headers]
        failed = [rank for rank, d in enumerate(dims) if d < 0]
        if failed:
            raise ValueError(
                f"update failed on another rank ({_ranks_text(failed)}; see its error); nothing was stored"
            )
        if len(set(dims)) > 1:
            raise ValueError(
                "embeddings must have the same dimension on every rank, got "
                + _per_rank_text(dims, "{value} on {ranks}")
            )
        dtype = np.float64 if any(h[3] for h in headers) else np.float32
        return self.all_gather_rows(rows), self.all_gather_rows(values.astype(dtype, copy=False))


def _group_timeout(group: Any) -> Any:
    """The timeout ``group`` was created with, or ``None`` (torch's default) if it cannot be read."""
    try:
        device = torch.device("cuda") if dist.get_backend(group) == "nccl" else torch.device("cpu")
        return group._get_backend(device).options._timeout
    except Exception:  # noqa: BLE001  (private torch API: fall back to the default)
        return None
