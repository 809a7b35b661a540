"""The Lightning recipe (examples/train_lightning.py) on 1 process and on 2 gloo processes.

The example runs as a subprocess with a timeout (a hang fails the test; the whole process group
is killed, so ranks that Lightning launched do not outlive it). Every rank writes what it trained
on (``--report-dir``) and the test checks it: every rank ran the same number of batches, the
ranks' indices of an epoch cover every instance exactly once (plus the documented padding of a
last uneven global batch), a graph exists after the warm-up epoch, and banks and graphs are
identical on all ranks.
"""

import json
import math
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "train_lightning.py"
N = 1797  # sklearn digits
TIMEOUT = 240  # seconds: far above a normal run, so only a hang reaches it


def _run(tmp_path, *args):
    """Run the example with ``args``; returns (exit status, output, reports by rank)."""
    report_dir = tmp_path / "report"
    report_dir.mkdir()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, str(SCRIPT), "--quick", "--report-dir", str(report_dir), *args]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True
    )
    try:
        output, _ = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # the launcher and every rank it started
        output, _ = process.communicate()
        pytest.fail(f"{' '.join(args)} did not finish within {TIMEOUT}s:\n{output[-4000:]}")
    reports = {int(p.stem[4:]): json.loads(p.read_text()) for p in report_dir.glob("rank*.json")}
    return process.returncode, output, reports


def _check_epochs(reports, world_size, batch_size):
    """What every distributed run must show, whatever the refresh mode."""
    assert sorted(reports) == list(range(world_size))
    global_batch = batch_size * world_size
    expected_len = math.ceil(N / global_batch)
    last = N - (expected_len - 1) * global_batch
    padding = -last % world_size  # the last global batch is padded to a multiple of world_size
    for report in reports.values():
        assert report["world_size"] == world_size
        assert report["len"] == expected_len and report["global_batch_size"] == global_batch
        assert report["epochs_started"] == [0, 1]  # set_epoch reached the sampler through .sampler
        assert report["batches"] == [expected_len, expected_len]  # same steps on every rank
    for epoch in range(2):
        counts = Counter(i for report in reports.values() for i in report["indices"][epoch])
        assert set(counts) == set(range(N))  # every instance in every epoch
        assert sum(counts.values()) == N + padding
        repeated = {i for i, c in counts.items() if c > 1}
        assert sum(counts[i] - 1 for i in repeated) == padding
        # The padding repeats instances of the epoch's first global batch (as DistributedSampler).
        first = {i for report in reports.values() for i in report["indices"][epoch][:batch_size]}
        assert repeated <= first
    # One bank and one graph: update and the builds kept every rank identical.
    assert len({report["bank_sha1"] for report in reports.values()}) == 1
    assert len({report["graph_sha1"] for report in reports.values()}) == 1
    assert len({tuple(report["graph_versions"]) for report in reports.values()}) == 1
    assert reports[0]["graph_sha1"] is not None


def test_one_process(tmp_path):
    status, output, reports = _run(tmp_path, "--num-workers", "2")
    assert status == 0, output[-4000:]
    _check_epochs(reports, world_size=1, batch_size=128)
    # Warm-up epoch of uniform batches, then scheduled builds (refresh_every=5) during epoch 1.
    assert reports[0]["graph_versions"][0] == 0 < reports[0]["graph_versions"][1]
    assert "kNN accuracy" in output


@pytest.mark.parametrize(
    "strategy, refresh",
    [
        ("ddp", "schedule"),
        ("ddp", "epoch-end"),
        pytest.param("ddp_spawn", "schedule", marks=pytest.mark.slow),
        pytest.param("ddp_spawn", "epoch-end", marks=pytest.mark.slow),
    ],
)
def test_two_gloo_processes(tmp_path, strategy, refresh):
    status, output, reports = _run(tmp_path, "--devices", "2", "--strategy", strategy, "--refresh", refresh)
    assert status == 0, output[-4000:]
    _check_epochs(reports, world_size=2, batch_size=64)
    versions = reports[0]["graph_versions"]
    if refresh == "schedule":
        assert versions[0] == 0 < versions[1]  # warm-up epoch, then background builds
        assert reports[0]["builds"] == reports[1]["builds"] >= 1
    else:
        assert versions == [1, 2]  # a blocking (collective) build at the end of every epoch
        assert reports[0]["builds"] == reports[1]["builds"] == 2


def test_lightning_default_distributed_sampler_fails_loudly(tmp_path):
    # Trainer(use_distributed_sampler=True), Lightning's default, would re-instantiate the batch
    # sampler over a DistributedSampler (a quarter of the data with 4 ranks): it must fail.
    status, output, reports = _run(tmp_path, "--devices", "2", "--use-distributed-sampler")
    assert status != 0
    assert "ValueError" in output and "use_distributed_sampler=False" in output
    assert reports == {}  # no rank trained
