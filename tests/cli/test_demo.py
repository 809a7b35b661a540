import json

from batchsampler.cli import main

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SAMPLERS = ("uniform", "knn", "batchsampler")


def _rows(text):
    return {line.split()[0]: line.split() for line in text.splitlines() if line.split() and line.split()[0] in SAMPLERS}


def test_static_part_prints_one_row_per_sampler(tmp_path, capsys):
    assert main(["demo", "--batch-size", "128", "--static-only", "--output-dir", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith("digits: 1797 instances x 64 dims, 10 classes")
    rows = _rows(out)
    assert set(rows) == set(SAMPLERS)
    assert all(row[1] == "15" and row[4] == "1.000" for row in rows.values())  # 15 batches, full coverage
    assert float(rows["batchsampler"][2]) > float(rows["uniform"][2])
    assert float(rows["batchsampler"][3]) < float(rows["knn"][3])
    assert "2/2" not in out and not (tmp_path / "out").exists()


def test_quick_tour_trains_prints_the_comparison_and_writes_plots(tmp_path, capsys):
    output = tmp_path / "tour"
    assert main(["demo", "--quick", "--batch-size", "128", "--output-dir", str(output)]) == 0
    out, err = capsys.readouterr()
    # stderr is not a terminal here (pytest captures it): no progress bars, as tqdm's convention.
    assert len(err) < 500, err[:500]
    static, training = out.split("2/2", 1)
    assert set(_rows(static)) == set(SAMPLERS)
    rows = _rows(training)
    assert set(rows) == {"uniform", "batchsampler"}
    for row in rows.values():
        runs, accuracy, hardness, same_label, seconds, share = row[1:7]
        assert runs == "1" and 0.5 < float(accuracy) <= 1.0
        assert 0.0 <= float(same_label) <= 1.0 and float(seconds) >= 0.0 and float(share) >= 0.0
    # Epochs 1..2 walk the graph built from the warm-up epoch's embeddings.
    assert float(rows["batchsampler"][3]) > float(rows["uniform"][3])
    assert "raw pixels score" in training and "Measured, batchsampler minus uniform" in training
    document = json.loads((output / "RUN.json").read_text())
    assert set(document["runs"]) == {"uniform@seed0", "batchsampler@seed0"}
    assert [record["epoch"] for record in document["runs"]["batchsampler@seed0"]] == [0, 1, 2]
    assert document["runs"]["batchsampler@seed0"][-1]["graph_version"] >= 1
    assert document["meta"]["demo"]["settings"]["epochs"] == 3
    for name in ("hardness.png", "false_negatives.png", "metrics.png", "overhead.png", "graph.png"):
        data = (output / name).read_bytes()
        assert data[:8] == PNG_SIGNATURE and len(data) > 5000, name


def test_bad_tour_settings_are_reported(tmp_path, capsys):
    assert main(["demo", "--epochs", "0", "--output-dir", str(tmp_path)]) == 2
    assert "--epochs must be >= 1" in capsys.readouterr().err


def test_demo_warms_the_kernels_before_timing(tmp_path, capsys):
    assert main(["demo", "--batch-size", "128", "--static-only", "--no-progress"]) == 0
    lines = capsys.readouterr().out.splitlines()
    warm = next(number for number, line in enumerate(lines) if line.startswith("compiled kernels loaded in"))
    table = next(number for number, line in enumerate(lines) if line.startswith("sampler "))
    assert warm < table


class _Terminal:
    def __init__(self, tty):
        self.tty = tty

    def isatty(self):
        return self.tty


def test_progress_bars_follow_tqdm_conventions():
    from batchsampler.cli._progress import progress_wanted

    assert progress_wanted(stream=_Terminal(True))
    assert not progress_wanted(stream=_Terminal(False))
    assert not progress_wanted(no_progress=True, stream=_Terminal(True))
    assert not progress_wanted(stream=object())  # no isatty at all


def test_training_bars_are_drawn_when_asked(monkeypatch, capsys):
    import numpy as np
    import torch

    from batchsampler.cli import _tour

    pixels = torch.rand(64, 64)
    labels = np.arange(64) % 4
    settings = _tour.TourSettings(epochs=1, batch_size=16, k=3, m=10)
    _tour.train("uniform", pixels, labels, settings, progress=True)
    assert "step" in capsys.readouterr().err  # explicit progress=True still draws
    _tour.train("uniform", pixels, labels, settings, progress=False)
    assert capsys.readouterr().err == ""


def test_demo_run_with_stderr_to_a_pipe_writes_little_there(tmp_path):
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "batchsampler", "demo", "--quick", "--batch-size", "256", "--samplers", "uniform",
         "--output-dir", str(tmp_path / "out")],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert len(result.stderr) < 500, result.stderr[:500]
    assert "tour finished in" in result.stdout
