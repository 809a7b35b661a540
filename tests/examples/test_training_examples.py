"""The training-loop examples run (quick mode) and do what their docs say."""

import runpy
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _load(name):
    return runpy.run_path(str(EXAMPLES / name))


def test_plain_loop_trains_refreshes_and_resumes_exactly(tmp_path):
    train_loop = _load("train_loop.py")["main"]
    uninterrupted = train_loop(["--epochs", "3", "--refresh-every", "5"])
    assert len(uninterrupted["history"]) == 3 and uninterrupted["final_knn_accuracy"] > 0.8
    stopped = train_loop(["--epochs", "3", "--refresh-every", "5", "--checkpoint", str(tmp_path), "--stop-after", "20"])
    assert stopped["stopped_at"] == 20
    resumed = train_loop(["--epochs", "3", "--refresh-every", "5", "--checkpoint", str(tmp_path), "--resume"])
    # Epoch 1 was interrupted (its loss average covers only the resumed part); epoch 2 is whole.
    assert resumed["history"][-1] == uninterrupted["history"][-1]


def test_plain_loop_resumes_with_weights_only_loading(tmp_path, monkeypatch):
    import pickle

    import torch

    train_loop = _load("train_loop.py")["main"]
    train_loop(["--quick", "--sampler", "uniform", "--checkpoint", str(tmp_path), "--stop-after", "3"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sampler.npz", "train.pt"]  # no temporary left
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    train_loop(["--quick", "--sampler", "uniform", "--checkpoint", str(tmp_path), "--resume"])
    assert calls == [True]  # asked for explicitly: torch < 2.6 defaults to unpickling anything
    monkeypatch.setattr(torch, "load", real_load)

    # A checkpoint holding an arbitrary object is refused, and the object is never built.
    torch.save({"model": _Payload()}, tmp_path / "train.pt")
    with pytest.raises(pickle.UnpicklingError):
        train_loop(["--quick", "--sampler", "uniform", "--checkpoint", str(tmp_path), "--resume"])
    assert not _Payload.built


class _Payload:
    built = False

    def __reduce__(self):
        return (_Payload._build, ())

    @staticmethod
    def _build():
        _Payload.built = True
        return _Payload()


@pytest.mark.parametrize("sampler", ["uniform", "knn"])
def test_plain_loop_with_baselines(sampler):
    result = _load("train_loop.py")["main"](["--quick", "--sampler", sampler, "--loss", "dcl"])
    assert len(result["history"]) == 2


def test_accelerate_prepare():
    result = _load("train_accelerate.py")["main"](["--quick"])
    assert result["epochs_seen"] == 2  # the sampler advanced its own epochs
    assert result["history"][-1]["graph_version"] > 0


# The Lightning recipe (1 process, 2 gloo processes) is tested in test_lightning_recipe.py.


def test_hardness_tradeoff_quick(tmp_path):
    """The trade-off script's smoke run: tables, JSON and plot, targets held on the digits."""
    import json

    main = _load("hardness_tradeoff.py")["main"]
    assert main(["--quick", "--output-dir", str(tmp_path)]) == 0
    document = json.loads((tmp_path / "tradeoff.json").read_text())
    for mode, points in document["curves"].items():
        for point in points:
            assert abs(point["relative_hardness"] - point["target"]) <= 0.1, (mode, point)
    assert document["references"]["uniform batches"]["relative_hardness"] == pytest.approx(0.0, abs=0.05)
    assert (tmp_path / "tradeoff.png").stat().st_size > 0 and "| exactly once |" in (tmp_path / "tradeoff.md").read_text()


def test_paired_table_pairs_arms_with_the_uniform_run_of_their_temperature_and_seed(tmp_path):
    import json

    module = _load("paired_table.py")

    def run(sampler, temperature, seed, knn, **settings):
        config = {"sampler": sampler, "temperature": temperature, "seed": seed, **settings}
        epochs = [{"epoch": e, "relative_hardness": 0.1 * e, "encoded_relative_hardness": 0.2, "same_label_share": 0.1,
                   "planned_hardness": 0.1 * e + 0.04} for e in range(3)]
        return {"config": config, "knn_accuracy": knn, "linear_accuracy": None, "epochs": epochs}

    runs = [run("uniform", 0.5, 0, 0.60), run("uniform", 0.5, 1, 0.62), run("uniform", 0.1, 0, 0.70),
            run("batchsampler", 0.5, 0, 0.63), run("batchsampler", 0.5, 1, 0.61),
            run("batchsampler", 0.1, 0, 0.69), run("batchsampler", 0.5, 0, 0.66, bank="encoded"),
            run("batchsampler", 0.5, 0, 0.64, target_hardness=0.05), run("batchsampler", 0.5, 0, 0.6, k=8),
            run("batchsampler", 0.5, 0, 0.64, target_hardness=0.05, drift_epochs=3),
            run("batchsampler", 0.5, 0, 0.64, target_hardness=0.05, warmup_epochs=2)]
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "simclr_runs.json").write_text(json.dumps({"runs": runs}))
    rows = {row["arm"]: row for row in module["rows"](runs)}
    assert set(rows) == {"uniform, t=0.5", "uniform, t=0.1", "batchsampler, t=0.5", "batchsampler, t=0.1",
                         "batchsampler (bank=encoded), t=0.5", "batchsampler (target=0.05), t=0.5",
                         "batchsampler (k=8), t=0.5", "batchsampler (target=0.05, drift=3), t=0.5",
                         "batchsampler (target=0.05, warmup=2), t=0.5"}
    mean, std, count = rows["batchsampler, t=0.5"]["knn_accuracy_paired"]
    assert (mean, count) == (pytest.approx(1.0), 2) and std == pytest.approx(2 ** 1.5)  # +3 and -1
    assert rows["batchsampler, t=0.1"]["knn_accuracy_paired"][0] == pytest.approx(-1.0)
    assert rows["batchsampler (bank=encoded), t=0.5"]["knn_accuracy_paired"][2] == 1
    assert rows["batchsampler, t=0.5"]["relative_hardness"] == pytest.approx(0.15)  # epochs after the first
    assert rows["batchsampler, t=0.5"]["planned_hardness"] == pytest.approx(0.19)
    # Epochs 1 and 2 measure 0.1 and 0.2: one within 0.1 of 0.05; no target, no count.
    assert rows["batchsampler (target=0.05), t=0.5"]["epochs_on_target"] == (1, 2)
    assert rows["batchsampler (target=0.05), t=0.5"]["walked_on_target"] == (1, 2)  # 0.14 and 0.24
    assert rows["batchsampler, t=0.5"]["epochs_on_target"] is None
    # Two uniform epochs first: only epoch 2 walked (0.2, 0.24 as walked; neither within 0.1 of 0.05).
    late = rows["batchsampler (target=0.05, warmup=2), t=0.5"]
    assert late["relative_hardness"] == pytest.approx(0.2) and late["epochs_on_target"] == (0, 1)
    assert module["main"]([str(tmp_path / "a"), "--output", str(tmp_path / "t.md")]) == 0
    assert "| batchsampler, t=0.5 | 2 | 62.00 ± 1.00 | 63.0 / 61.0 | +1.00 ± 2.83 (2) |" in (tmp_path / "t.md").read_text()


def test_paired_table_reads_simcse_runs_and_pairs_by_head(tmp_path):
    import json

    module = _load("paired_table.py")

    def run(sampler, seed, test, dev, **settings):
        config = {"sampler": sampler, "temperature": 0.05, "seed": seed, **settings}
        return {"config": config, "scores": {"STS-B test": test}, "best_dev": dev,
                "batch_stats": {"mean_similarity": 0.1}}

    runs = [run("uniform", 0, 82.0, 87.0), run("uniform", 1, 82.4, 87.2), run("uniform", 0, 81.0, 86.0, head="mlp"),
            run("batchsampler", 0, 82.5, 87.1), run("batchsampler", 1, 82.3, 87.4),
            run("batchsampler", 0, 81.6, 86.1, head="mlp", bank="backbone")]
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "simcse_runs.json").write_text(json.dumps({"runs": runs}))
    assert module["main"]([str(tmp_path / "s"), "--output", str(tmp_path / "t.md")]) == 0
    table = (tmp_path / "t.md").read_text()
    # +0.5 and -0.1 against the uniform runs of the same seed; the head arm pairs with uniform (head=mlp).
    assert "| batchsampler, t=0.05 | 2 | 82.40 ± 0.10 | 82.5 / 82.3 | +0.20 ± 0.42 (2) |" in table
    assert "| batchsampler (bank=backbone, head=mlp), t=0.05 | 1 | 81.60 ± 0.00 | 81.6 | +0.60 (1) |" in table
    assert "in-batch cosine (starting model)" in table
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "simclr_runs.json").write_text(json.dumps({"runs": []}))
    with pytest.raises(SystemExit):
        module["main"]([str(tmp_path / "s"), str(tmp_path / "v")])


@pytest.mark.parametrize(("modality", "data", "steps", "walks", "walked"), [
    # MUTAG at B = 32: 6 steps; the calibration repeats the epoch ceil(256 / 6) times; one uniform epoch
    ("graph", "tu/MUTAG", 6, 43, [1, 2]),
    # 512 images at B = 256; at most 64 repeats; a target warms up SimCLR for two epochs
    ("vision", "fashion-mnist", 2, 64, [2]),
])
def test_hardness_drift_quick_follows_each_walked_epoch_to_its_end(tmp_path, modality, data, steps, walks, walked):
    import json

    shared = Path(__file__).resolve().parents[3] / "shared" / "data"  # as the integration tests' data
    if not (shared / data).exists():
        pytest.skip(f"shared data not found at {shared / data}")
    main = _load("hardness_drift.py")["main"]
    root = shared / data.split("/")[0]
    assert main(["--quick", "--modality", modality, "--root", str(root), "--output-dir", str(tmp_path)]) == 0
    document = json.loads((tmp_path / "drift.json").read_text())
    [run] = document["runs"]
    assert [epoch["epoch"] for epoch in run["epochs"]] == walked  # after the uniform warm-up
    for epoch in run["epochs"]:
        # the bank it was walked on, then one point per step, the last the run's own measure
        assert len(epoch["trajectory"]) == steps + 1
        assert epoch["trajectory"][-1] == pytest.approx(epoch["relative_hardness"])
        assert abs(epoch["trajectory"][0] - epoch["planned_hardness"]) < 0.05  # same bank, references measured again
        assert len(epoch["other_walks_start"]) == len(epoch["other_walks_end"]) == walks
    assert document["summary"]["epochs"] == len(walked)
    assert (tmp_path / "drift.md").read_text().startswith("# ")
    assert (tmp_path / "drift.png").stat().st_size > 0


@pytest.mark.parametrize("bad", [["--max-candidate-walks", "0"], ["--warmup-epochs", "0"], ["--target-hardness", "1.5"]])
def test_hardness_drift_refuses_bad_flags_before_any_work(tmp_path, bad, capsys):
    main = _load("hardness_drift.py")["main"]
    with pytest.raises(SystemExit) as stopped:
        main([*bad, "--root", str(tmp_path / "absent"), "--output-dir", str(tmp_path / "out")])
    assert stopped.value.code == 2 and bad[0] in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
