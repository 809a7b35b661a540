"""Background graph builds sharded over 2 and 3 gloo ranks (CPU), with one table per node."""

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import _distributed_worker as worker  # noqa: E402  (spawned children import it by name)
from test_distributed import _same_on_every_rank, _spawn  # noqa: E402

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="gloo spawn tests run on Linux")


def _no_errors(results):
    for result in results:
        assert "error" not in result, result["error"]


@pytest.mark.parametrize("world_size, nodes", [(2, None), (3, ["a", "a", "b"])])
def test_background_builds_are_split_and_give_the_single_process_stream(tmp_path, world_size, nodes):
    # nodes: 3 ranks "on two nodes" (ranks 0 and 1 share a table, rank 2 gets rows over gloo).
    n, batch_size = 150, 5
    config = {
        "n": n, "batch_size": batch_size, "epochs": 3, "nodes": nodes,
        "kwargs": dict(k=5, m=30, seed=7, refresh_every=4, warmup_epochs=1, background=True, swap_delay=2),
    }
    results = _spawn(worker.background_stream, world_size, tmp_path, config)
    _no_errors(results)
    reference = results[0]
    assert reference["builds"] >= 3
    for result in results:
        # The same global batches, swaps at the same batches, the same graph as one process.
        assert result["stream"] == reference["stream"] == reference["single_stream"]
        assert result["versions"] == reference["versions"] == reference["single_versions"]
        assert result["graph"] == reference["graph"] == reference["single_graph"] is not None
        assert result["single_calls"] == []  # one process: whole builds (ProximityGraph.build)
    # Each rank computed only its own share of every build, and the shares partition the nodes.
    # (Every build requested, including one still pending at the end, which is not swapped in.)
    assert all(len(r["calls"]) == r["requested"] >= r["builds"] for r in results)
    for build in range(reference["requested"]):
        shares = [r["calls"][build] for r in results]
        assert [s["shard"] for s in shares] == [[rank, world_size] for rank in range(world_size)]
        rows = [row for s in shares for row in s["rows"]]
        assert sorted(rows) == list(range(n))
        assert all(len(s["rows"]) <= -(-n // world_size) + 41 for s in shares)  # blocks of m + 1 = 31 anchors


def test_background_graphs_match_single_builds_and_share_one_table(tmp_path):
    results = _spawn(worker.background_checks, 2, tmp_path)
    _no_errors(results)
    for key, reference in results[0]["backends"].items():
        per_rank = [r["backends"][key] for r in results]
        # Every backend: the same graph on every rank (the ranks exchange their rows).
        assert all(p["digest"] == reference["digest"] for p in per_rank), key
        # Every rank computed about half of the rows, together all of them.
        assert [c["shard"] for p in per_rank for c in p["calls"]] == [[0, 2], [1, 2]], key
        assert sorted(row for p in per_rank for c in p["calls"] for row in c["rows"]) == list(range(400)), key
        assert all(p["pending_rows"] == len(p["calls"][0]["rows"]) for p in per_rank)
    backends = results[0]["backends"]
    # The random backend (full or partial bank), exact kNN and HNSW (one thread): bit-identical to
    # ProximityGraph.build with the same seed.
    for key in ("random-1.0", "random-0.8", "exact-1.0", "hnsw-1.0"):
        assert backends[key]["indices_equal"] and backends[key]["scores_equal"], key
    # IVF: rows whose probes found fewer than k points are completed with random nodes drawn in
    # shard order, so only those may differ from a single build.
    assert backends["ivf-1.0"]["rows_equal"] > 0.9

    # One table on the node: both ranks map the same file, whose name is gone once mapped.
    shared = _same_on_every_rank(results, "shared")
    assert shared.startswith("/dev/shm/batchsampler-")
    inode = _same_on_every_rank(results, "shared_inode")
    assert inode > 0
    for result in results:
        assert result["graph_in_mmap"] and not result["shared_exists_after_build"]
        assert result["state_group"] and result["pickle_private"] and result["deepcopy_private"]
        # The replaced graph's table stays mapped as the build group's spare (for reuse) until the
        # group releases its pool, then it is unmapped; the new one stays mapped; no names are left.
        assert result["old_still_mapped"] and result["new_mapped"]
        assert not result["old_mapped_after_release"] and result["new_mapped_after_release"]
        assert not result["exists_after_close"]
        # BATCHSAMPLER_SHARED_MEMORY=0: private tables, the same graph.
        assert result["private_shared"] is None and result["private_equal"]
        # No room in /dev/shm on one rank: private tables on both, the same graph.
        assert result["nospace_shared"] is None and result["nospace_equal"]
    assert _same_on_every_rank(results, "second_shared") != shared
    assert not os.path.exists(shared)


def test_a_build_failing_on_one_rank_raises_on_every_rank_at_the_swap(tmp_path):
    results = _spawn(worker.background_failures, 2, tmp_path)
    _no_errors(results)
    message = _same_on_every_rank(results, "failure")
    assert message == "background graph build failed: rank 1 raised ValueError: no memory left on rank 1"
    for result in results:
        produced, swap_at = result["failed_at"]
        assert produced == swap_at  # raised where the swap was due, not earlier
    assert _same_on_every_rank(results, "after") is not None  # the next build works on every rank
    assert sum(r["after_rows"] for r in results) == 200 and all(r["after_rows"] < 200 for r in results)
    # Without the build group: no sharded calls, the same graph on both ranks (each built it whole).
    no_group = _same_on_every_rank(results, "no_group")
    assert no_group[:2] == [True, 0] and no_group[2] is not None
    out_of_step = _same_on_every_rank(results, "out_of_step")
    assert out_of_step.startswith(
        "background graph build failed: background graph builds out of step across ranks: rank 0 is at build 3 and "
        "rank 1 at build 2"
    )


def test_tables_are_reused_across_builds_and_a_graph_in_use_is_never_written_to(tmp_path):
    results = _spawn(worker.background_reuse, 2, tmp_path)
    _no_errors(results)
    builds = _same_on_every_rank(results, "builds")
    # Every build: the graph of a single build with the same seed (bit for bit), on every rank.
    assert all(b["digest"] == b["single"] for b in builds)
    assert len({b["digest"] for b in builds}) == 4  # (each build has its own seed)
    # Two tables, then the free one of the two is reused: A B A B.
    paths = [b["shared"] for b in builds]
    assert all(p.startswith("/dev/shm/batchsampler-") for p in paths)
    assert paths[0] != paths[1] and paths[2] == paths[0] and paths[3] == paths[1]
    # Rank 0 keeps the graph of build 3 (table B): B is never reused while it lives, not even by
    # rank 1, which does not hold it; the graphs stay right, the kept one unchanged.
    after = _same_on_every_rank(results, "after_hold")
    held = _same_on_every_rank(results, "held_table")
    assert all(a["digest"] == a["single"] for a in after)
    assert all(a["shared"] != held for a in after)
    assert after[0]["shared"] == paths[0]  # A was free (build 2's graph was replaced by build 3's)
    assert all(r["held_unchanged"] for r in results)
    # A fork on rank 1 retires the tables mapped then: a new table on both ranks, then reuse again.
    assert all(r["after_fork_new"] and r["after_fork_equal"] and r["after_fork_third_equal"] for r in results)
    second = _same_on_every_rank(results, "after_fork_second")
    assert _same_on_every_rank(results, "after_fork_third") != second
    # BATCHSAMPLER_TABLE_REUSE=0: a new table at every build, only the current graph's mapped.
    no_reuse = _same_on_every_rank(results, "no_reuse")
    assert len({path for path, _, _ in no_reuse}) == 3
    assert all(equal and mapped == [path] for path, equal, mapped in no_reuse)
    # BATCHSAMPLER_SHARED_MEMORY=0: private tables, the same graphs as with shared ones.
    for result in results:
        assert result["private"] == [[None, True]] * 3


@pytest.mark.parametrize("world_size, nodes, private", [(2, None, False), (3, ["a", "a", "b"], False), (2, None, True)])
def test_rows_written_into_the_output_table_give_the_single_build(tmp_path, world_size, nodes, private):
    # BuildGroup.output_table, then build_rows(out=...) and gather_graph: the rows go straight into
    # the (shared or private) table; ranks "on another node" get the others' rows by all-gather.
    results = _spawn(worker.build_into_table, world_size, tmp_path, {"nodes": nodes, "private": private})
    _no_errors(results)
    for result in results:
        builds = result["builds"]
        assert all(b["indices_equal"] and b["scores_equal"] for b in builds), builds
        assert all(b["scores_identical"] for b, kind in zip(builds, "rrmer") if kind != "e")
        shares = not private and (nodes is None or nodes[result["rank"]] == "a")
        if not shares:
            assert all(b["shared"] is None and not b["reused"] for b in builds)
        else:
            assert [b["reused"] for b in builds] == [False, False, True, True, True]
            paths = [b["shared"] for b in builds]
            assert paths[2] == paths[0] and paths[3] == paths[1] and paths[4] == paths[0]
        assert result["failure"] == "rank 0 raised ValueError: failed on rank 0"
        after = result["after_failure"]
        assert after["equal"] and after["previous_intact"]
        if shares:
            assert after["reused"] and after["shared"] == builds[3]["shared"]
