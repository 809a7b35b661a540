"""The graph sampler's own gloo group for sharded background builds (:class:`BuildGroup`).

Split from :mod:`batchsampler.distributed`, whose :class:`~batchsampler.distributed.DistributedContext`
creates it (``new_build_group``) and whose header exchange every collective here starts with:
ranks at different builds, or a rank whose part of a build failed, make every rank raise the
same error instead of leaving the others waiting. The node's shared tables are
:mod:`batchsampler._shared`'s.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from typing import Any

import numpy as np

from .distributed import (
    _OP_BUILD,
    _OP_FILL,
    _OP_FILLED,
    _OP_MAPPED,
    _OP_RESERVE,
    _OP_SHARE,
    _OP_TABLE,
    DistributedContext,
    _digest,
    _grouped,
    _per_rank_text,
    _ranks_text,
)

__all__ = ["BuildGroup"]

logger = logging.getLogger("batchsampler.distributed")  # the messages read as the distributed module's


class BuildGroup:
    """The sampler's own gloo group, on CPU tensors, for the rows of background graph builds.

    Created in the graph sampler's constructor (:meth:`DistributedContext.new_build_group`) and
    used only by the build thread: the training loop's collectives (NCCL or gloo, on the
    training group) are never touched, and the main thread never waits on this group (it waits
    for a build only at the build's swap point, if the build is late). Every rank requests the
    same builds at the same produced batch and only one is pending at a time, so the build
    threads of all ranks make the same calls in the same order. As on the training group, every
    collective starts with a header exchange ``[operation, build number, failed, value]``: ranks
    at different builds, or a rank whose part of a build failed, make every rank raise the same
    ``RuntimeError`` rather than leave the others waiting.
    """

    def __init__(self, context: DistributedContext) -> None:
        from . import _shared

        self.context = context
        # This node's tables, for reuse (double buffering); BATCHSAMPLER_TABLE_REUSE=0: none kept.
        self._pool = _shared.TablePool(capacity=2 if _shared.reuse_enabled() else 0)
        self._prepared: _Output | None = None  # the table output_table() opened for the next gather_graph

    def release(self) -> None:
        """Forget the pooled tables (each is freed once no graph refers to it). Builds may follow."""
        self._pool.clear()

    @property
    def rank(self) -> int:
        return self.context.rank

    @property
    def world_size(self) -> int:
        return self.context.world_size

    def _step(self, op: int, build: int, error: BaseException | None, value: int, doing: str) -> list[int]:
        """One header exchange of a build; every rank's ``value``.

        Raises:
            RuntimeError: on every rank, if the ranks are at different builds, or if ``error``
                is set on some rank (naming each failed rank and its error).
        """
        headers = self.context._exchange(op, build, int(error is not None), value, doing)
        builds = [h[1] for h in headers]
        if len(set(builds)) > 1:
            raise RuntimeError(
                "background graph builds out of step across ranks: "
                + _per_rank_text(builds, "{ranks} at build {value}", first="{ranks} {is} at build {value}")
                + " (builds counted from 0; every rank must request background builds at the same points)"
            )
        if any(h[2] for h in headers):
            text = None if error is None else f"{type(error).__name__}: {error}"
            texts = self.context._gather_objects(text)
            failures = [f"{_ranks_text(ranks)} raised {value}" for value, ranks in _grouped(texts) if value is not None]
            raise RuntimeError("; ".join(failures)) from error
        return [h[3] for h in headers]

    def output_table(self, build: int, num_nodes: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``[N, k]`` tables build ``build`` will be gathered into, to write the shard's rows in.

        A collective: every rank calls it before computing its rows (then passes the tables as
        ``out`` to :func:`batchsampler._build.build_rows`, and calls :meth:`gather_graph` with the
        same ``build``). The rows then go straight into the node's shared table (a pooled one
        when one is free on every rank of the node), with no arrays of the shard's own and no
        copy. Opens the same table as :meth:`gather_graph` would open after the rows.

        Raises:
            RuntimeError: on every rank, if the ranks are at different builds.
        """
        self._prepared = None
        output = self._open_table(build, num_nodes, k, f"opening the table of background graph build {build}")
        self._prepared = output
        return output.neighbors, output.scores

    def _open_table(self, build: int, num_nodes: int, k: int, doing: str) -> _Output:
        """Agree on this build's table: a free pooled one, a new shared one, or a private one.

        Ranks on one node (that see the same ``/dev/shm``) share one table. One that is free on
        every rank of the node (see :class:`batchsampler._shared.TablePool`) is reused as it is;
        otherwise the node's lowest rank creates a new one, every rank of the node reserves its
        slice of the pages and maps it, and the name is unlinked once all have. A rank without a
        shared table gets a private one (and the rows of the others by all-gather, at the fill).
        Four header exchanges and one small object all-gather, whatever happens.
        """
        from . import _shared

        node = None
        if _shared.enabled():
            try:
                node = _shared.node_key()
            except OSError:
                node = None
        free = [] if node is None else [t.path for t in self._pool.free(num_nodes, k)]
        self._step(_OP_TABLE, build, None, 0, doing)  # every rank at this build before the objects
        everyone = self.context._gather_objects({"node": node, "token": secrets.token_hex(8), "free": free})
        mates = [r for r, e in enumerate(everyone) if node is not None and e["node"] == node]
        leader = mates[0] if len(mates) > 1 else None
        reused = None  # a pooled table free on every rank of the node, the same choice on each
        if leader is not None:
            common = [p for p in everyone[leader]["free"] if all(p in everyone[r]["free"] for r in mates)]
            reused = self._pool.get(common[0]) if common else None
        name = None if leader is None else _shared.segment_name(everyone[leader]["token"], build)
        table = created_here = None  # this rank's shared table; the one it created (and unlinks)
        codes = None
        try:
            if reused is not None:
                table = reused
            elif leader == self.rank:
                try:
                    table = created_here = _shared.SharedTable.create(name, num_nodes, k)
                except OSError as caught:
                    logger.warning("graph table not shared between this node's ranks (%s): each keeps a copy", caught)
            created = self._step(_OP_SHARE, build, None, int(table is not None), doing)
            if reused is None and leader is not None and leader != self.rank and created[leader]:
                try:
                    table = _shared.SharedTable.attach(name, num_nodes, k)
                except OSError as caught:
                    logger.warning("cannot open the node's shared graph table (%s): this rank keeps a copy", caught)
            # Every rank of the node reserves (and so zeroes) its slice of the pages of a new
            # table. The node shares it only if all of them could: a write to an unreserved page
            # of a full /dev/shm would kill the process with SIGBUS.
            reserved = int(reused is not None)
            if table is not None and reused is None:
                try:
                    table.reserve(mates.index(self.rank), len(mates))
                    reserved = 1
                except OSError as caught:
                    logger.warning("no room for the shared graph table (%s): each rank keeps a copy", caught)
            reserved_by = self._step(_OP_RESERVE, build, None, reserved, doing)
            if table is not None and not all(reserved_by[r] for r in mates):
                table.close()
                table = None
            if table is not None and reused is None:
                try:
                    table.map()
                except OSError as caught:  # its mates still share it; this rank gets the rows by all-gather
                    logger.warning("cannot map the node's shared graph table (%s): this rank keeps a copy", caught)
                    table.close()
                    table = None
            code = _digest(table.path)[0] & 0x3FFFFFFFFFFFFFFF if table is not None else -1 - self.rank
            # A barrier too: every rank of the node has mapped the table (or given up on it).
            codes = self._step(_OP_MAPPED, build, None, code, doing)
        finally:
            if table is not None:
                table.close()  # (mapped: already closed)
            if created_here is not None:
                created_here.unlink()  # every mate has mapped it (or given up): the name is no longer needed
        if table is None:
            neighbors = np.empty((num_nodes, k), dtype=np.int32)
            scores = np.empty((num_nodes, k), dtype=np.float32)
        else:
            if reused is None:
                self._pool.add(table)
            neighbors, scores = table.arrays()
        return _Output(build, neighbors, scores, None if table is None else table.path, code, codes, reused is not None)

    def gather_graph(
        self,
        build: int,
        num_nodes: int,
        k: int,
        shard: tuple[np.ndarray, np.ndarray, np.ndarray] | None,
        error: BaseException | None = None,
    ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """The full ``[N, k]`` neighbour and score tables of build ``build``, from every rank's shard.

        Every rank passes its shard's ``(rows, neighbors, scores)`` (as from
        :func:`~batchsampler.graph.build_neighbor_rows`), or ``error`` if computing it failed:
        a failed rank still takes part, and every rank then raises. Ranks on one node (that see
        the same ``/dev/shm``) write their rows into one table in shared memory (see
        :mod:`batchsampler._shared`; a pooled table when one is free on all of them), so their
        rows need no exchange; rows of ranks with another table (other nodes, or shared memory
        unavailable) are all-gathered over this group. After :meth:`output_table` (same build)
        the table is the one opened there, and a shard whose ``neighbors`` is that table (built
        with ``out=``) is already in place: nothing is copied.

        Returns:
            int32 and float32 ``[N, k]`` tables (views of the node's shared table, or private
            arrays) and ``{"shared": path or None, "sharing": ranks mapping the table,
            "reused": whether the table is a pooled one}``.

        Raises:
            RuntimeError: on every rank, if a rank's shard failed (naming it and its error) or
                the ranks are at different builds.
        """
        doing = f"in background graph build {build}"
        output, self._prepared = self._prepared, None
        if output is not None and (output.build != build or output.neighbors.shape != (num_nodes, k)):
            output = None  # not this build's (a caller that opened a table and never gathered it)
        self._step(_OP_BUILD, build, error, 0, doing)
        if output is None:  # the table is opened after the rows (they are copied into it)
            output = self._open_table(build, num_nodes, k, doing)
        rows, neighbors, scores = shard
        full_neighbors, full_scores = output.neighbors, output.scores
        in_place = neighbors is full_neighbors  # written by build_rows(out=output_table(...))
        failure = None
        try:
            if not in_place:
                full_neighbors[rows] = neighbors
                full_scores[rows] = scores
        except Exception as caught:  # noqa: BLE001  (reported to every rank)
            failure = caught
        # A barrier too: every rank has written its rows.
        self._step(_OP_FILL, build, failure, 0, doing)
        codes, code = output.codes, output.code
        if len(set(codes)) > 1:  # some table lacks rows other ranks computed: all-gather them
            if in_place:
                neighbors, scores = full_neighbors[rows], full_scores[rows]
            all_rows = self.context.all_gather_rows(rows)
            all_neighbors = self.context.all_gather_rows(np.asarray(neighbors, dtype=np.int32))
            all_scores = self.context.all_gather_rows(np.asarray(scores, dtype=np.float32))
            failure = None
            if codes.index(code) == self.rank:  # one writer per table; its mates read after the barrier
                try:
                    full_neighbors[all_rows] = all_neighbors
                    full_scores[all_rows] = all_scores
                except Exception as caught:  # noqa: BLE001
                    failure = caught
            del all_rows, all_neighbors, all_scores
            self._step(_OP_FILLED, build, failure, 0, doing)
        info = {"shared": output.path, "sharing": codes.count(code), "reused": output.reused}
        return full_neighbors, full_scores, info


@dataclass
class _Output:
    """The table of one background build, as agreed by :meth:`BuildGroup._open_table`."""

    build: int
    neighbors: np.ndarray
    scores: np.ndarray
    path: str | None  # the shared table's name, or None for a private table
    code: int  # equal on the ranks that share a table
    codes: list[int]  # every rank's code
    reused: bool
