import json

import pytest
from batchsampler.integrations.graph.sweep import main, summarize, variants


def test_variants_move_one_setting_within_the_dataset():
    found = dict(variants(188, batch_size=128))
    assert found["defaults"] == {} and found["uniform"] == {"sampler": "uniform"}
    assert found["B=32"] == {"batch_size": 32} and found["uniform B=32"]["sampler"] == "uniform"
    # MUTAG defaults: k = 18, m = 94; the variants stay valid (k < N, m >= k, m < N).
    assert found["k=4"] == {"k": 4, "m": 94} and found["k=72"] == {"k": 72, "m": 94}
    assert "m=23" in found and "m=187" in found and "m=94" not in found
    assert all(len(overrides) <= 2 for overrides in found.values())
    with pytest.raises(ValueError, match="num_graphs"):
        variants(3)


def test_summary_averages_only_the_epochs_that_walked_a_graph():
    def run(variant, sampler, accuracy, epochs):
        return {"variant": variant, "accuracy": accuracy, "train_seconds": 1.0, "config": {"sampler": sampler},
                "epochs": [{"epoch": i, "graph_version": v, "mean_similarity": s, "same_label_share": p}
                           for i, (v, s, p) in enumerate(epochs)]}

    runs = [run("defaults", "batchsampler", 0.8, [(0, 0.0, 0.5), (1, 0.4, 0.7)]),
            run("defaults", "batchsampler", 0.9, [(0, 0.0, 0.5), (2, 0.6, 0.9)]),
            run("uniform", "uniform", 0.7, [(0, 9.0, 9.0), (0, 0.1, 0.5)])]
    rows = {row["variant"]: row for row in summarize(runs)}
    assert rows["defaults"]["accuracy"] == pytest.approx(85.0) and rows["defaults"]["accuracy_std"] == pytest.approx(5.0)
    assert rows["defaults"]["hardness"] == pytest.approx(0.5) and rows["defaults"]["same_label_share"] == pytest.approx(0.8)
    assert rows["uniform"]["hardness"] == pytest.approx(0.1)


def test_quick_sweep_writes_table_json_and_plot(tu_root, tmp_path):
    out = tmp_path / "sweep"
    assert main(["--quick", "--root", str(tu_root), "--output-dir", str(out), "--bank", "backbone"]) == 0
    document = json.loads((out / "sweep_runs.json").read_text())
    assert [row["variant"] for row in document["summary"]] == ["defaults", "uniform"]
    assert document["bank"] == "backbone" and all(r["config"]["bank"] == "backbone" for r in document["runs"])
    assert "| defaults | 1 |" in (out / "sweep_table.md").read_text()
    assert (out / "sweep.png").read_bytes()[:4] == b"\x89PNG"


def test_factor_variants_cover_the_issue_factors_at_one_batch_size():
    from batchsampler.integrations.graph.sweep import factor_variants

    found = dict(factor_variants(188, batch_size=32))
    assert list(found)[:2] == ["uniform", "defaults"]
    assert found["replacement"] == {"replacement": True} and found["backbone bank"] == {"bank": "backbone"}
    assert found["encoded bank"] == {"bank": "encoded"}
    assert found["k=4 (B/8)"]["k"] == 4 and found["k=64 (2B)"] == {"k": 64, "m": 94}
    assert [found[f"target={t}"] for t in (0.25, 0.5, 0.75)] == [{"target_hardness": t} for t in (0.25, 0.5, 0.75)]
    assert not any("batch_size" in overrides for overrides in found.values())  # one step budget
    assert dict(factor_variants(10, batch_size=32))["k=9 (2B)"]["k"] == 9  # k < N


def test_summary_pairs_every_variant_with_the_uniform_run_of_its_seed():
    def run(variant, sampler, seed, accuracy, relative=None):
        return {"variant": variant, "accuracy": accuracy, "train_seconds": 1.0,
                "config": {"sampler": sampler, "seed": seed, "batch_size": 32},
                "epochs": [{"epoch": 1, "graph_version": 1, "mean_similarity": 0.1, "same_label_share": 0.5,
                            "relative_hardness": relative, "planned_hardness": relative and relative + 0.1}]}

    runs = [run("uniform", "uniform", 0, 0.80), run("uniform", "uniform", 1, 0.90),
            run("defaults", "batchsampler", 0, 0.82, 0.4), run("defaults", "batchsampler", 1, 0.86, 0.2),
            run("target=0.5", "batchsampler", 2, 0.9, 0.5), run("target=0.5", "batchsampler", 3, 0.9, 0.65)]
    for r in runs[-2:]:
        r["config"]["target_hardness"] = 0.5
    rows = {row["variant"]: row for row in summarize(runs)}
    assert rows["defaults"]["per_seed"] == {0: pytest.approx(82.0), 1: pytest.approx(86.0)}
    assert rows["defaults"]["paired_difference"] == pytest.approx(-1.0)  # (+2 - 4) / 2
    assert rows["defaults"]["paired_std"] == pytest.approx(4.242640687, rel=1e-6)
    assert rows["defaults"]["relative_hardness"] == pytest.approx(0.3)
    assert rows["target=0.5"]["paired_difference"] is None and rows["target=0.5"]["paired_seeds"] == 0
    assert rows["uniform"]["paired_difference"] == pytest.approx(0.0)
    assert rows["target=0.5"]["epochs_on_target"] == pytest.approx(0.5) and rows["defaults"]["epochs_on_target"] is None
    assert rows["target=0.5"]["planned_hardness"] == pytest.approx(0.675) and rows["uniform"]["planned_hardness"] is None
    assert rows["target=0.5"]["walked_on_target"] == pytest.approx(0.5)  # 0.6 within 0.1 of 0.5, 0.75 not
    from batchsampler.integrations.graph.sweep import markdown_table

    table = markdown_table(list(rows.values()))
    assert "| defaults | 2 | 84.00 ± 2.00 | 82.0 / 86.0 | -1.00 ± 4.24 | 0.100 | 0.300 | 0.400 | — | — |" in table
    assert "| 0.575 | 0.675 | 0.50 (as walked 0.50) |" in table


def test_from_runs_merges_files_and_a_later_run_replaces_an_earlier_one(tmp_path):
    def run(variant, sampler, seed, accuracy):
        return {"variant": variant, "accuracy": accuracy, "train_seconds": 1.0,
                "config": {"sampler": sampler, "seed": seed, "batch_size": 32},
                "epochs": [{"epoch": 1, "graph_version": 1, "mean_similarity": 0.1, "same_label_share": 0.5}]}

    old = {"dataset": "MUTAG", "runs": [run("uniform", "uniform", 0, 0.80), run("defaults", "batchsampler", 0, 0.70)]}
    new = {"dataset": "MUTAG", "runs": [run("defaults", "batchsampler", 0, 0.85)]}
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "sweep_runs.json").write_text(json.dumps(old))
    (tmp_path / "new.json").write_text(json.dumps(new))
    out = tmp_path / "merged"
    assert main(["--from-runs", str(tmp_path / "old"), str(tmp_path / "new.json"), "--output-dir", str(out)]) == 0
    document = json.loads((out / "sweep_runs.json").read_text())
    rows = {row["variant"]: row for row in document["summary"]}
    assert [r["variant"] for r in document["runs"]] == ["uniform", "defaults"]
    assert rows["defaults"]["accuracy"] == pytest.approx(85.0)
    assert rows["defaults"]["paired_difference"] == pytest.approx(5.0)
    assert (out / "sweep.png").read_bytes()[:4] == b"\x89PNG"
    (tmp_path / "other.json").write_text(json.dumps({"dataset": "PROTEINS", "runs": []}))
    (tmp_path / "partial.json").write_text(json.dumps({"partial": True, "runs": []}))
    for bad in ("other.json", "partial.json", "missing.json"):
        with pytest.raises(SystemExit):
            main(["--from-runs", str(tmp_path / "new.json"), str(tmp_path / bad), "--output-dir", str(out)])


def test_max_candidate_walks_reaches_the_target_variants_only_and_labels_them(tu_root, tmp_path, monkeypatch):
    from batchsampler.integrations.graph import train

    monkeypatch.setattr(train, "svm_accuracy", lambda embeddings, labels, seed: (0.5, 0.0))  # seconds per run
    out = tmp_path / "sweep"
    assert main(["--factors", "--batch-size", "64", "--only", "uniform", "encoded bank, target=0.5", "--seeds", "1",
                 "--epochs", "2", "--max-candidate-walks", "16", "--root", str(tu_root), "--output-dir", str(out)]) == 0
    runs = json.loads((out / "sweep_runs.json").read_text())["runs"]
    assert {run["variant"]: run["config"]["max_candidate_walks"] for run in runs} == {
        "uniform": None, "encoded bank, target=0.5, max_walks=16": 16}
    with pytest.raises(ValueError, match="--max-candidate-walks must be >= 1"):
        main(["--max-candidate-walks", "0", "--root", str(tu_root), "--output-dir", str(out)])
