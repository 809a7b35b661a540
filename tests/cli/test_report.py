import json
import subprocess
import sys
from pathlib import Path

import pytest

from batchsampler import BatchSampler, UniformBatchSampler
from batchsampler.cli import main
from batchsampler.diagnostics import SamplerMonitor
from batchsampler.diagnostics.plots import plot_runs

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _write_run(path, clustered, names=("uniform", "batchsampler"), metrics=True, epochs=2):
    embeddings, labels = clustered
    for name in names:
        sampler_class = BatchSampler if name.startswith("batchsampler") else UniformBatchSampler
        sampler = sampler_class(len(embeddings), 40, k=5, m=60, seed=0, embeddings=embeddings)
        monitor = SamplerMonitor(sampler, name=name, labels=labels, embeddings=embeddings)
        for epoch in range(epochs):
            for batch in sampler:
                monitor.on_batch(batch, step_seconds=0.01)
            monitor.on_epoch_end(metrics={"knn_accuracy": 0.5 + 0.1 * epoch} if metrics else None)
        monitor.to_json(path)
    return path


def _assert_png(path):
    data = Path(path).read_bytes()
    assert data[:8] == PNG_SIGNATURE and len(data) > 5000, path


def test_report_writes_every_plot_and_a_summary(tmp_path, clustered, capsys):
    run = _write_run(tmp_path / "RUN.json", clustered)
    assert main(["report", str(run), "-o", str(tmp_path / "plots")]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.split()}
    assert rows["uniform"][1] == "2" and rows["batchsampler"][1] == "2"  # epochs per run
    assert float(rows["batchsampler"][2]) > float(rows["uniform"][2])  # in-batch cos of the last epoch
    assert "knn_accuracy 0.600" in out
    names = ["hardness.png", "false_negatives.png", "metrics.png", "overhead.png", "graph.png"]
    for name in names:
        _assert_png(tmp_path / "plots" / name)
        assert f"wrote {tmp_path / 'plots' / name}" in out


def test_plots_follow_what_was_recorded(tmp_path, clustered):
    document = json.loads(_write_run(tmp_path / "RUN.json", clustered, names=("uniform",), metrics=False).read_text())
    written = plot_runs(document, tmp_path / "plots")
    assert [path.name for path in written] == ["hardness.png", "false_negatives.png", "overhead.png"]
    for path in written:
        _assert_png(path)
    with pytest.raises(ValueError, match="no epoch record"):
        plot_runs({"format": document["format"], "runs": {"empty": []}}, tmp_path / "none")
    with pytest.raises(ValueError, match="RUN.json"):
        plot_runs({"runs": {}}, tmp_path / "none")


def test_report_merges_files_and_defaults_to_their_directory(tmp_path, clustered, capsys):
    first = _write_run(tmp_path / "a" / "RUN.json", clustered, names=("batchsampler@seed0",), epochs=1)
    second = _write_run(tmp_path / "b" / "RUN.json", clustered, names=("batchsampler@seed1", "uniform@seed0"), epochs=1)
    assert main(["report", str(first), str(second)]) == 0
    out = capsys.readouterr().out
    names = {line.split()[0] for line in out.splitlines() if line.strip()}
    assert {"batchsampler@seed0", "batchsampler@seed1", "uniform@seed0"} <= names
    _assert_png(tmp_path / "a" / "hardness.png")
    assert not (tmp_path / "b" / "hardness.png").exists()


def test_report_errors_are_reported(tmp_path, capsys):
    (tmp_path / "bad.json").write_text(json.dumps({"runs": {}}))
    assert main(["report", str(tmp_path / "bad.json")]) == 2
    assert "not a RUN.json document" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "missing.json")]) == 2
    with pytest.raises(SystemExit) as exit_info:
        main(["report", "--help"])
    assert exit_info.value.code == 0


def test_matplotlib_is_imported_only_to_plot():
    code = (
        "import sys, batchsampler.diagnostics, batchsampler.cli, batchsampler.cli.report, batchsampler.cli.demo\n"
        "assert 'matplotlib' not in sys.modules, 'matplotlib imported'\n"
        "import batchsampler.diagnostics.plots\n"
        "assert 'matplotlib' not in sys.modules, 'matplotlib imported by plots at import time'\n"
    )
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True,
                            env={"PYTHONPATH": str(root), "PATH": ""}, timeout=120)
    assert result.returncode == 0, result.stderr


def test_report_files_are_replaced_atomically(tmp_path, clustered, monkeypatch, capsys):
    from matplotlib.figure import Figure

    from batchsampler.diagnostics import load_runs, write_runs

    run = _write_run(tmp_path / "RUN.json", clustered, names=("uniform",), epochs=1)
    assert main(["report", str(run)]) == 0
    before = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    real_savefig = Figure.savefig

    def interrupted(self, target, **kwargs):
        real_savefig(self, target, **kwargs)  # the bytes are written...
        raise OSError("killed mid-save")  # ...but the save never completes

    monkeypatch.setattr(Figure, "savefig", interrupted)
    assert main(["report", str(run)]) == 2
    assert "killed mid-save" in capsys.readouterr().err
    # Every file is the previous one, whole, and no temporary file is left beside them.
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == before

    import batchsampler._io as io

    monkeypatch.setattr(io.os, "fsync", lambda fd: (_ for _ in ()).throw(OSError("disk gone")))
    with pytest.raises(OSError, match="disk gone"):
        write_runs(run, {"format": "batchsampler-run/1", "runs": {}, "meta": {}})
    assert load_runs(run) == json.loads(before["RUN.json"])
    assert {path.name for path in tmp_path.iterdir()} == set(before)
