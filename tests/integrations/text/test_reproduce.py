import json

import pytest

from batchsampler.cli import main


def test_quick_reproduction_writes_table_json_and_chart(tiny_data, encoder_available, tmp_path, capsys):
    root, _ = tiny_data
    out = tmp_path / "out"
    argv = ["reproduce", "text", "--quick", "--corpus", str(root / "corpus.txt.xz"), "--sts-dirs", str(root),
            "--output-dir", str(out)]
    assert main(argv) == 0
    record = json.loads((out / "simcse_runs.json").read_text())
    assert sorted(r["config"]["sampler"] for r in record["runs"]) == ["batchsampler", "knn", "uniform"]
    assert record["sts_pairs"]["STS-B test"] == 29 and "partial" not in record
    assert {"STS-B test", "STS12", "SICK-R test", "dev"} <= set(record["reference"])
    assert all(r["config"]["steps"] == 2 and len(r["losses"]) == 2 for r in record["runs"])
    table = (out / "simcse_table.md").read_text()
    assert table.count("| ntxent |") == 3 and "starting model (no training)" in table
    assert "STS-B test" in table.splitlines()[0]
    assert (out / "simcse_sts.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out_text, err = capsys.readouterr()
    assert "3 runs in" in out_text
    assert "SimCSE runs" not in err and "step/s" not in err  # no bars: stderr is not a terminal


def test_target_and_replacement_flags_reach_the_runs_and_label_the_arms(tiny_data, encoder_available, tmp_path):
    root, _ = tiny_data
    out = tmp_path / "out"
    argv = ["reproduce", "text", "--quick", "--corpus", str(root / "corpus.txt.xz"), "--sts-dirs", str(root),
            "--samplers", "uniform", "batchsampler", "--target-hardness", "0.5", "--replacement", "--output-dir", str(out)]
    assert main(argv) == 0
    runs = json.loads((out / "simcse_runs.json").read_text())["runs"]
    assert [(r["config"]["sampler"], r["config"]["target_hardness"], r["config"]["replacement"]) for r in runs] == \
        [("uniform", None, True), ("batchsampler", 0.5, True)]
    assert [r["config"]["max_candidate_walks"] for r in runs] == [None, None]  # not set: the sampler's default
    assert all((r["config"]["bank"], r["config"]["head"]) == ("projection", "none") for r in runs)  # the defaults
    table = (out / "simcse_table.md").read_text()
    assert "| ntxent | uniform (replacement) (n=1) |" in table
    assert "| ntxent | batchsampler (target=0.5, replacement) (n=1) |" in table


def test_bad_run_flags_stop_before_any_work(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["reproduce", "text", "--samplers", "uniform", "--target-hardness", "0.5", "--corpus", str(tmp_path)])
    assert stop.value.code == 2 and "--target-hardness is an option of the batchsampler" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:
        main(["reproduce", "text", "--bank", "head", "--corpus", str(tmp_path)])
    assert stop.value.code == 2 and "argument --bank: invalid choice: 'head'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:
        main(["reproduce", "text", "--head", "linear", "--corpus", str(tmp_path)])
    assert stop.value.code == 2 and "argument --head: invalid choice: 'linear'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:
        main(["reproduce", "text", "--first-seed", "-1", "--corpus", str(tmp_path)])
    assert stop.value.code == 2 and "--first-seed must be >= 0" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:
        main(["reproduce", "text", "--max-candidate-walks", "8", "--corpus", str(tmp_path)])
    assert stop.value.code == 2 and "--max-candidate-walks must be >= 1 and goes with --target-hardness" in \
        capsys.readouterr().err


def test_bank_and_head_flags_reach_the_runs_and_label_the_arms(tiny_data, encoder_available, tmp_path):
    root, _ = tiny_data
    out = tmp_path / "out"
    argv = ["reproduce", "text", "--quick", "--corpus", str(root / "corpus.txt.xz"), "--sts-dirs", str(root),
            "--samplers", "uniform", "batchsampler", "--bank", "backbone", "--head", "mlp", "--first-seed", "2",
            "--output-dir", str(out)]
    assert main(argv) == 0
    runs = json.loads((out / "simcse_runs.json").read_text())["runs"]
    assert [(r["config"]["sampler"], r["config"]["bank"], r["config"]["head"]) for r in runs] == \
        [("uniform", "backbone", "mlp"), ("batchsampler", "backbone", "mlp")]
    assert [r["config"]["seed"] for r in runs] == [2, 2]  # --first-seed: seeds added to an earlier run
    assert all(len(r["losses"]) == 2 for r in runs)
    table = (out / "simcse_table.md").read_text()
    assert "| ntxent | uniform (bank=backbone, head=mlp) (n=1) |" in table
    assert "| ntxent | batchsampler (bank=backbone, head=mlp) (n=1) |" in table
