import json

import pytest

from batchsampler.cli import main


def test_quick_reproduction_writes_table_json_and_chart(tu_root, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["reproduce", "graph", "--quick", "--root", str(tu_root), "--output-dir", str(out)]) == 0
    runs = json.loads((out / "graphcl_runs.json").read_text())["runs"]
    assert sorted(r["config"]["sampler"] for r in runs) == ["batchsampler", "knn", "uniform"]
    table = (out / "graphcl_table.md").read_text()
    assert table.count("| ntxent |") == 3 and "paper 87.78 ± 0.93" in table
    assert (out / "graphcl_accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out_text, err = capsys.readouterr()
    assert "3 runs in" in out_text
    assert "GraphCL runs" not in err  # no bars: stderr is not a terminal


def test_first_seed_extends_a_grid(tu_root, tmp_path):
    out = tmp_path / "out"
    args = ["reproduce", "graph", "--quick", "--samplers", "uniform", "--first-seed", "3", "--seeds", "1"]
    assert main([*args, "--root", str(tu_root), "--output-dir", str(out)]) == 0
    runs = json.loads((out / "graphcl_runs.json").read_text())["runs"]
    assert [r["config"]["seed"] for r in runs] == [3]


def test_from_json_tabulates_runs_of_several_files_and_rejects_duplicates(tmp_path, capsys):
    def run(seed, accuracy):
        return {"dataset": "MUTAG", "accuracy": accuracy, "config": {"sampler": "uniform", "loss": "ntxent", "seed": seed}}

    first, second = tmp_path / "a.json", tmp_path / "b.json"
    first.write_text(json.dumps({"runs": [run(0, 0.80), run(1, 0.90)]}))
    second.write_text(json.dumps({"runs": [run(2, 0.85)]}))
    out = tmp_path / "out"
    assert main(["reproduce", "graph", "--from-json", str(first), str(second), "--output-dir", str(out)]) == 0
    assert "| ntxent | uniform | 85.00 ± 4.08 (n=3)" in (out / "graphcl_table.md").read_text()
    assert (out / "graphcl_accuracy.png").is_file()
    assert main(["reproduce", "graph", "--from-json", str(first), str(first), "--output-dir", str(out)]) != 0
    assert "is in both" in capsys.readouterr().err


def test_bank_target_and_replacement_flags_reach_the_runs_and_label_the_arms(tu_root, tmp_path, monkeypatch):
    from batchsampler.integrations.graph import train

    monkeypatch.setattr(train, "svm_accuracy", lambda embeddings, labels, seed: (0.5, 0.0))  # seconds per run
    out = tmp_path / "out"
    args = ["reproduce", "graph", "--quick", "--samplers", "uniform", "batchsampler", "--bank", "backbone",
            "--target-hardness", "0.5", "--replacement", "--epochs", "1", "--warmup-epochs", "2",
            "--max-candidate-walks", "16"]
    assert main([*args, "--root", str(tu_root), "--output-dir", str(out)]) == 0
    runs = json.loads((out / "graphcl_runs.json").read_text())["runs"]
    assert [(r["config"]["sampler"], r["config"]["bank"], r["config"]["target_hardness"], r["config"]["replacement"],
             r["config"]["warmup_epochs"], r["config"]["max_candidate_walks"]) for r in runs] == [
        ("uniform", "backbone", None, True, 2, None), ("batchsampler", "backbone", 0.5, True, 2, 16)]
    table = (out / "graphcl_table.md").read_text()
    assert "| ntxent | uniform (bank=backbone, replacement, warmup=2) |" in table
    assert "| ntxent | batchsampler (bank=backbone, target=0.5, replacement, warmup=2, max_walks=16) |" in table
    assert "paper" not in table  # the authors' numbers sit beside their own setting only


def test_from_json_keeps_arms_apart_and_reads_old_records_as_defaults(tmp_path):
    def run(seed, accuracy, **settings):
        return {"dataset": "MUTAG", "accuracy": accuracy,
                "config": {"sampler": "batchsampler", "loss": "ntxent", "seed": seed, **settings}}

    old, new = tmp_path / "old.json", tmp_path / "new.json"
    old.write_text(json.dumps({"runs": [run(0, 0.80), run(1, 0.90)]}))  # written before the settings existed
    new.write_text(json.dumps({"runs": [run(0, 0.70, bank="backbone"), run(0, 0.60, bank="projection", target_hardness=0.5),
                                        run(2, 0.85, bank="projection", target_hardness=None, replacement=False)]}))
    out = tmp_path / "out"
    assert main(["reproduce", "graph", "--from-json", str(old), str(new), "--output-dir", str(out)]) == 0
    table = (out / "graphcl_table.md").read_text()
    assert "| ntxent | batchsampler | 85.00 ± 4.08 (n=3); paper" in table
    assert "| ntxent | batchsampler (bank=backbone) | 70.00 ± 0.00 (n=1) |" in table
    assert "| ntxent | batchsampler (target=0.5) | 60.00 ± 0.00 (n=1) |" in table


def test_bad_run_flags_stop_before_any_work(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["reproduce", "graph", "--bank", "head", "--root", str(tmp_path)])
    assert stop.value.code == 2 and "invalid choice: 'head'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:
        main(["reproduce", "graph", "--samplers", "knn", "--target-hardness", "0.5", "--root", str(tmp_path)])
    assert stop.value.code == 2 and "--target-hardness is an option of the batchsampler" in capsys.readouterr().err
