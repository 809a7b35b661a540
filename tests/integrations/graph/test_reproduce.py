import json

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
