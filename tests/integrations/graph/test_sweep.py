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
