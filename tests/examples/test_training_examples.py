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


@pytest.mark.parametrize("sampler", ["uniform", "knn"])
def test_plain_loop_with_baselines(sampler):
    result = _load("train_loop.py")["main"](["--quick", "--sampler", sampler, "--loss", "dcl"])
    assert len(result["history"]) == 2


def test_accelerate_prepare():
    result = _load("train_accelerate.py")["main"](["--quick"])
    assert result["epochs_seen"] == 2  # the sampler advanced its own epochs
    assert result["history"][-1]["graph_version"] > 0


def test_lightning_sets_epochs_through_the_sampler_child():
    result = _load("train_lightning.py")["main"](["--quick"])
    assert result["epochs_started"] == [0, 1]
    assert result["graph_version"] > 0
