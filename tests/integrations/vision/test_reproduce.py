import json

import numpy as np
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
