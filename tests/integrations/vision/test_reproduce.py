import json

import numpy as np
import pytest
from PIL import Image

from batchsampler.cli import main

from .conftest import pattern_images


def _check_outputs(out, capsys):
    record = json.loads((out / "simclr_runs.json").read_text())
    runs = record["runs"]
    assert sorted(r["config"]["sampler"] for r in runs) == ["batchsampler", "knn", "uniform"]
    assert len({tuple(e["num_batches"] for e in r["epochs"]) for r in runs}) == 1  # same steps
    assert all(len(r["epochs"]) == 2 and r["linear_accuracy"] is not None for r in runs)
    table = (out / "simclr_table.md").read_text()
    assert table.count("| ntxent |") == 3 and "kNN acc. (%)" in table
    assert (out / "simclr_knn_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out_text, err = capsys.readouterr()
    assert "3 runs in" in out_text
    assert "SimCLR runs" not in err  # no bars: stderr is not a terminal
    return record


def test_quick_reproduction_on_an_image_folder(tmp_path, capsys):
    for split, seed in (("train", 0), ("test", 1)):
        images, labels = pattern_images(12, size=16, seed=seed)
        for i, (image, label) in enumerate(zip(images, labels)):
            path = tmp_path / "data" / split / f"class{label}" / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.repeat(image[..., None], 3, axis=2)).save(path)
    out = tmp_path / "out"
    argv = ["reproduce", "vision", "--quick", "--dataset", "folder", "--root", str(tmp_path / "data"),
            "--batch-size", "16", "--output-dir", str(out)]
    assert main(argv) == 0
    record = _check_outputs(out, capsys)
    assert record["train_shape"] == [36, 3, 16, 16] and record["test_shape"] == [36, 3, 16, 16]


def test_quick_reproduction_on_fashion_mnist(fashion_root, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["reproduce", "vision", "--quick", "--root", str(fashion_root), "--output-dir", str(out)]) == 0
    record = _check_outputs(out, capsys)
    assert record["train_shape"] == [512, 1, 28, 28] and record["torch_threads"] == 1


def _image_folder(root):
    for split, seed in (("train", 0), ("test", 1)):
        images, labels = pattern_images(8, size=12, seed=seed)
        for i, (image, label) in enumerate(zip(images, labels)):
            path = root / split / f"class{label}" / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(path)
    return root


def _tiny_run(tmp_path, *flags):
    out = tmp_path / "out"
    argv = ["reproduce", "vision", "--quick", "--dataset", "folder", "--root", str(_image_folder(tmp_path / "data")),
            "--batch-size", "8", "--epochs", "1", "--no-linear-probe", "--output-dir", str(out), *flags]
    assert main(argv) == 0
    return json.loads((out / "simclr_runs.json").read_text())["runs"], (out / "simclr_table.md").read_text()


def test_bank_and_replacement_flags_reach_every_run_and_label_the_arms(tmp_path):
    runs, table = _tiny_run(tmp_path, "--samplers", "uniform", "knn", "--bank", "both", "--replacement")
    assert [(r["config"]["sampler"], r["config"]["bank"], r["config"]["replacement"], r["config"]["target_hardness"])
            for r in runs] == [("uniform", "both", True, None), ("knn", "both", True, None)]
    assert "| ntxent | uniform (bank=both, replacement) |" in table and "| ntxent | knn (bank=both, replacement) |" in table


def test_warmup_epochs_reach_the_sampler_and_label_the_arm(tmp_path):
    runs, table = _tiny_run(tmp_path / "late", "--samplers", "knn", "--warmup-epochs", "2", "--epochs", "2")
    assert [r["config"]["warmup_epochs"] for r in runs] == [2]
    assert [e["graph_version"] for e in runs[0]["epochs"]] == [0, 0]  # both epochs uniform: no graph yet
    assert "| ntxent | knn (warmup=2) |" in table
    runs, table = _tiny_run(tmp_path / "default", "--samplers", "knn", "--epochs", "2")
    assert [e["graph_version"] for e in runs[0]["epochs"]][-1] >= 1 and "| ntxent | knn |" in table


def test_first_seed_and_the_encoded_bank_reach_the_runs(tmp_path):
    runs, table = _tiny_run(tmp_path, "--samplers", "batchsampler", "--bank", "encoded", "--seeds", "2",
                            "--first-seed", "3")
    assert [(r["config"]["seed"], r["config"]["bank"]) for r in runs] == [(3, "encoded"), (4, "encoded")]
    assert all(e["encoded_relative_hardness"] is not None for e in runs[0]["epochs"])
    assert "| batchsampler (bank=encoded) |" in table


def test_target_hardness_reaches_the_batchsampler_runs_only(tmp_path):
    runs, table = _tiny_run(tmp_path, "--samplers", "uniform", "batchsampler", "--target-hardness", "0.3",
                            "--bank", "backbone", "--max-candidate-walks", "64")
    # A target warms up for two epochs by default (TARGET_WARMUP_EPOCHS); the records hold the epochs run.
    assert {r["config"]["sampler"]: (r["config"]["target_hardness"], r["config"]["max_candidate_walks"],
                                     r["config"]["warmup_epochs"]) for r in runs} == {
        "uniform": (None, None, 1), "batchsampler": (0.3, 64, 2)}
    assert "| uniform (bank=backbone) |" in table
    assert "| batchsampler (bank=backbone, target=0.3, warmup=2, max_walks=64) |" in table


def test_an_explicit_warmup_goes_to_every_run(tmp_path):
    runs, _ = _tiny_run(tmp_path, "--samplers", "uniform", "batchsampler", "--target-hardness", "0.3",
                        "--warmup-epochs", "1")
    assert [r["config"]["warmup_epochs"] for r in runs] == [1, 1]


@pytest.mark.parametrize("flags, message", [
    (["--bank", "head"], "invalid choice: 'head'"),
    (["--target-hardness", "0.3", "--samplers", "uniform", "knn"], "--target-hardness is an option of the batchsampler"),
    (["--target-hardness", "nan"], "--target-hardness must be in [0, 1]"),
    (["--target-hardness", "2"], "--target-hardness must be in [0, 1]"),
    (["--first-seed", "-1"], "--first-seed must be >= 0"),
    (["--warmup-epochs", "0"], "--warmup-epochs must be >= 1"),
    (["--max-candidate-walks", "64"], "--max-candidate-walks must be >= 1 and goes with --target-hardness, got 64 "
                                      "without a target"),
    (["--max-candidate-walks", "0", "--target-hardness", "0.3"], "--max-candidate-walks must be >= 1"),
])
def test_bad_run_flags_stop_before_any_work(tmp_path, capsys, flags, message):
    with pytest.raises(SystemExit) as stop:
        main(["reproduce", "vision", "--root", str(tmp_path / "missing"), *flags])
    assert stop.value.code == 2 and message in capsys.readouterr().err
