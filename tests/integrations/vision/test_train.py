import types

import pytest
import torch
import torch.nn.functional as F
from batchsampler.integrations.vision import SimCLRConfig, train_simclr
from batchsampler.integrations.vision.train import sampler_options

TINY = {"epochs": 2, "width": 4, "blocks": (1, 1), "batch_size": 32, "projection_dim": 16, "device": "cpu"}


@pytest.mark.parametrize("sampler", ["uniform", "knn", "batchsampler"])
def test_training_per_sampler_records_curves_and_batch_statistics(patterns, sampler):
    train, test = patterns
    result = train_simclr(train, test, SimCLRConfig(sampler=sampler, **TINY))
    epochs = result["epochs"]
    assert [e["num_batches"] for e in epochs] == [3, 3]  # ceil(96 / 32): same steps for every sampler
    assert all(e["coverage"] == 1.0 and e["repeats"] == 0 for e in epochs)
    assert all(0.0 <= e["knn_accuracy"] <= 1.0 and e["loss"] > 0 for e in epochs)
    assert epochs[-1]["same_label_share"] is not None and epochs[-1]["mean_similarity"] is not None
    assert result["knn_accuracy"] == epochs[-1]["knn_accuracy"]
    assert result["linear_accuracy"] > 0.6  # three easy classes, chance is 1/3
    if sampler != "uniform":
        assert epochs[-1]["graph_version"] >= 1  # refreshed after the warm-up epoch


def test_same_seed_same_start_and_monitor_interval(patterns):
    train, test = patterns
    a = train_simclr(train, test, SimCLRConfig(sampler="uniform", seed=1, knn_every=2, linear_probe=False,
                                               **{**TINY, "epochs": 3}))
    b = train_simclr(train, test, SimCLRConfig(sampler="knn", seed=1, linear_probe=False, **TINY))
    assert a["initial_knn_accuracy"] == b["initial_knn_accuracy"]  # same initial weights
    assert [e["knn_accuracy"] is None for e in a["epochs"]] == [True, False, False]  # every 2nd and the last
    assert a["linear_accuracy"] is None


def test_invalid_configurations_are_refused(patterns):
    train, test = patterns
    with pytest.raises(ValueError, match="config.sampler"):
        train_simclr(train, test, SimCLRConfig(sampler="random", **TINY))
    with pytest.raises(ValueError, match="needs labels"):
        train_simclr(train, test, SimCLRConfig(loss="hscl", **TINY))
    with pytest.raises(ValueError, match="epochs"):
        train_simclr(train, test, SimCLRConfig(**{**TINY, "epochs": 0}))
    with pytest.raises(ValueError, match="same shape"):
        small = type(test)(test.images[:, :, :8, :8].contiguous(), test.labels, test.classes)
        train_simclr(train, small, SimCLRConfig(**TINY))


def test_sampler_options_scale_with_the_dataset():
    small = sampler_options(SimCLRConfig(batch_size=256), 5000)
    assert (small["k"], small["m"], small["refresh_every"], small["background"]) == (100, 1000, 20, False)
    tiny = sampler_options(SimCLRConfig(batch_size=32, k=5), 96)
    assert (tiny["k"], tiny["m"], tiny["refresh_every"]) == (5, 48, 3)


def _normalised(views):
    return torch.cat([v / v.norm(dim=1, keepdim=True) for v in views], dim=1)


@pytest.mark.parametrize("bank", ["projection", "backbone", "both"])
def test_bank_rows_are_the_chosen_space_of_the_batch(patterns, record_training, bank):
    from batchsampler.integrations.vision import train as module

    train, test = patterns
    recorder = record_training(module, "SimCLRModel", "uniform")
    result = train_simclr(train, test, SimCLRConfig(sampler="uniform", bank=bank, linear_probe=False,
                                                    **{**TINY, "epochs": 1}))
    assert result["config"]["bank"] == bank
    steps = recorder.steps()
    assert len(steps) == 3 and len(recorder.outputs) == 6  # one forward per view and step
    for indices, rows, features, projections in steps:
        assert len(rows) == len(indices)
        if bank == "projection":
            # The expression of the code before the bank setting: same numbers, not just close.
            expected = torch.cat([F.normalize(projections[0], dim=1), F.normalize(projections[1], dim=1)], dim=1)
            assert torch.equal(rows, expected)
        elif bank == "backbone":
            assert rows.shape[1] == 2 * 8 and torch.allclose(rows, _normalised(features))
        else:
            assert torch.allclose(rows, torch.cat([_normalised(projections), _normalised(features)], dim=1) / 2 ** 0.5)
            assert torch.allclose(rows.norm(dim=1), torch.full((len(rows),), 2 ** 0.5))


def test_bank_space_changes_hardness_but_not_training(patterns):
    train, test = patterns
    config = {**TINY, "sampler": "uniform", "linear_probe": False, "epochs": 2}
    runs = {bank: train_simclr(train, test, SimCLRConfig(bank=bank, **config)) for bank in ("projection", "backbone")}
    # Uniform batches ignore the bank, so the loss and the monitor are identical...
    assert [e["loss"] for e in runs["projection"]["epochs"]] == [e["loss"] for e in runs["backbone"]["epochs"]]
    assert runs["projection"]["knn_accuracy"] == runs["backbone"]["knn_accuracy"]
    # ...while the hardness is measured in the bank's space.
    assert runs["projection"]["epochs"][-1]["mean_similarity"] != runs["backbone"]["epochs"][-1]["mean_similarity"]
    default = train_simclr(train, test, SimCLRConfig(**config))
    assert default["epochs"] == runs["projection"]["epochs"] and default["config"]["bank"] == "projection"


def test_replacement_and_target_hardness_reach_the_sampler(patterns, record_training):
    from batchsampler.integrations.vision import train as module

    train, test = patterns
    recorder = record_training(module, "SimCLRModel", "batchsampler")
    result = train_simclr(train, test, SimCLRConfig(sampler="batchsampler", target_hardness=0.3, replacement=True,
                                                    linear_probe=False, **{**TINY, "epochs": 1}))
    assert recorder.kwargs["target_hardness"] == 0.3 and recorder.kwargs["replacement"] is True
    assert result["config"]["target_hardness"] == 0.3 and result["config"]["replacement"] is True
    assert sampler_options(SimCLRConfig(), 96)["replacement"] is False
    assert "target_hardness" not in sampler_options(SimCLRConfig(), 96)


@pytest.mark.parametrize("bad, error, match", [
    ({"bank": "head"}, ValueError, "config.bank must be one of"),
    ({"sampler": "uniform", "target_hardness": 0.3}, ValueError, "config.target_hardness"),
    ({"target_hardness": "hard"}, TypeError, "config.target_hardness"),
    ({"replacement": "yes"}, TypeError, "config.replacement"),
])
def test_bad_run_options_are_refused_before_any_work(patterns, monkeypatch, bad, error, match):
    from batchsampler.integrations.vision import train as module

    def no_model(*args, **kwargs):
        raise AssertionError("no model for a bad configuration")

    monkeypatch.setattr(module, "SimCLRModel", no_model)
    train, test = patterns
    with pytest.raises(error, match=match):
        train_simclr(train, test, SimCLRConfig(**{**TINY, **bad}))


def test_on_step_sees_every_step_and_leaves_training_unchanged(patterns, monkeypatch):
    from batchsampler.integrations import _arms as arms_module
    from batchsampler.integrations.vision import train as train_module
    from batchsampler.integrations.vision.evaluate import embed_images

    train, test = patterns
    config = SimCLRConfig(sampler="batchsampler", bank="encoded", linear_probe=False, **TINY)
    plain = train_simclr(train, test, config)
    seen, clock = [], [0.0]
    # A clock that moves only in the callback: no reported time may count the callback's.
    fake_time = types.SimpleNamespace(perf_counter=lambda: clock[0])
    monkeypatch.setattr(train_module, "time", fake_time)
    monkeypatch.setattr(arms_module, "time", fake_time)  # where the callback is timed

    def on_step(epoch, step, indices, model, sampler):
        assert model.training
        seen.append((epoch, step, len(indices)))
        embed_images(model, train.images, device="cpu")  # eval mode; train_simclr restores train mode
        clock[0] += 1000.0

    followed = train_simclr(train, test, config, on_step=on_step)
    assert clock[0] == 6000.0
    assert followed["train_seconds"] == followed["monitor_seconds"] == followed["eval_seconds"] == 0.0
    assert seen == [(e, s, 32) for e in range(2) for s in range(3)]  # 96 images, B = 32
    assert [e["loss"] for e in followed["epochs"]] == [e["loss"] for e in plain["epochs"]]
    assert followed["knn_accuracy"] == plain["knn_accuracy"]


@pytest.mark.parametrize(("options", "expected"), [
    ({}, 1), ({"target_hardness": 0.5}, 2), ({"target_hardness": 0.5, "warmup_epochs": 1}, 1),
    ({"warmup_epochs": 3}, 3),
])
def test_a_target_warms_up_two_epochs_unless_told(options, expected):
    assert sampler_options(SimCLRConfig(**options), 96)["warmup_epochs"] == expected


def test_the_record_holds_the_warmup_run(patterns):
    train, test = patterns
    result = train_simclr(train, test, SimCLRConfig(target_hardness=0.5, linear_probe=False, **{**TINY, "epochs": 3}))
    assert result["config"]["warmup_epochs"] == 2
    walked = [e["planned_hardness"] is not None for e in result["epochs"]]
    assert walked == [False, False, True]  # two uniform epochs, then the first walk
