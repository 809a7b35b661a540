import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from batchsampler.integrations.graph import GraphCLConfig, train_graphcl
from batchsampler.integrations.graph.train import sampler_options


@pytest.mark.parametrize("sampler", ["uniform", "knn", "batchsampler"])
def test_one_epoch_per_sampler_trains_and_evaluates(mutag, sampler):
    result = train_graphcl(mutag, GraphCLConfig(sampler=sampler, epochs=2, hidden=16))
    assert 0.5 < result["accuracy"] <= 1.0
    epochs = result["epochs"]
    assert [e["num_batches"] for e in epochs] == [2, 2]  # same steps for every sampler
    assert all(e["coverage"] == 1.0 and e["repeats"] == 0 for e in epochs)
    if sampler != "uniform":
        assert epochs[-1]["graph_version"] >= 1  # refreshed after the warm-up epoch


def test_sampler_options_scale_with_the_dataset():
    small = sampler_options(GraphCLConfig(), 188)
    assert (small["k"], small["m"], small["refresh_every"]) == (18, 94, 2)
    large = sampler_options(GraphCLConfig(), 50_000)
    assert (large["k"], large["m"]) == (100, 1000)


def test_losses_needing_labels_are_refused(mutag):
    with pytest.raises(ValueError, match="needs labels"):
        train_graphcl(mutag, GraphCLConfig(loss="hscl", epochs=1))
    with pytest.raises(ValueError, match="config.sampler"):
        train_graphcl(mutag, GraphCLConfig(sampler="random", epochs=1))


@pytest.fixture
def no_svm(monkeypatch):
    """Skips the 10-fold SVM evaluation (seconds) of ``train_graphcl``; returns the list of the
    embeddings it would have scored."""
    from batchsampler.integrations.graph import train as module

    scored = []
    monkeypatch.setattr(module, "svm_accuracy", lambda embeddings, labels, seed: (scored.append(embeddings), (0.5, 0.0))[1])
    return scored


def _normalised(views):
    return torch.cat([v / v.norm(dim=1, keepdim=True) for v in views], dim=1)


@pytest.mark.parametrize("bank", ["projection", "backbone", "both"])
def test_bank_rows_are_the_chosen_space_of_the_batch(mutag, record_training, no_svm, bank):
    from batchsampler.integrations.graph import train as module

    recorder = record_training(module, "GraphCLModel", "uniform")
    result = train_graphcl(mutag, GraphCLConfig(sampler="uniform", bank=bank, epochs=1, hidden=8, num_layers=2))
    assert result["config"]["bank"] == bank
    steps = recorder.steps()
    assert len(steps) == 2 and len(recorder.outputs) == 4  # one forward per view and step
    for indices, rows, features, projections in steps:
        assert len(rows) == len(indices) and features[0].shape == (len(indices), 16)
        if bank == "projection":
            # The expression of the code before the bank setting: same numbers, not just close.
            assert torch.equal(rows, torch.cat([F.normalize(projections[0], dim=1), F.normalize(projections[1], dim=1)], dim=1))
        elif bank == "backbone":
            assert torch.allclose(rows, _normalised(features))
        else:
            assert torch.allclose(rows, torch.cat([_normalised(projections), _normalised(features)], dim=1) / 2 ** 0.5)
            assert torch.allclose(rows.norm(dim=1), torch.full((len(rows),), 2 ** 0.5))


def test_bank_space_changes_hardness_but_not_training(mutag, no_svm):
    config = {"sampler": "uniform", "epochs": 1, "hidden": 8, "num_layers": 2}
    runs = {bank: train_graphcl(mutag, GraphCLConfig(bank=bank, **config)) for bank in ("projection", "both")}
    assert [e["loss"] for e in runs["projection"]["epochs"]] == [e["loss"] for e in runs["both"]["epochs"]]
    assert np.array_equal(no_svm[0], no_svm[1])  # the same trained encoder
    assert runs["projection"]["epochs"][-1]["mean_similarity"] != runs["both"]["epochs"][-1]["mean_similarity"]


def test_replacement_and_target_hardness_reach_the_sampler(mutag, record_training, no_svm):
    from batchsampler.integrations.graph import train as module

    recorder = record_training(module, "GraphCLModel", "batchsampler")
    result = train_graphcl(mutag, GraphCLConfig(sampler="batchsampler", target_hardness=0.3, replacement=True,
                                                epochs=1, hidden=8, num_layers=2))
    assert recorder.kwargs["target_hardness"] == 0.3 and recorder.kwargs["replacement"] is True
    assert result["config"]["target_hardness"] == 0.3 and result["config"]["replacement"] is True
    assert "target_hardness" not in sampler_options(GraphCLConfig(), 188)


@pytest.mark.parametrize("bad, error, match", [
    ({"bank": "head"}, ValueError, "config.bank must be one of"),
    ({"sampler": "knn", "target_hardness": 0.3}, ValueError, "config.target_hardness"),
    ({"replacement": None}, TypeError, "config.replacement"),
])
def test_bad_run_options_are_refused(mutag, bad, error, match):
    with pytest.raises(error, match=match):
        train_graphcl(mutag, GraphCLConfig(epochs=1, **bad))


def test_encoded_bank_is_the_eval_mode_encoding_after_every_epoch(tu_root, monkeypatch):
    """bank="encoded": no per-step rows; after each epoch the bank holds embed_graphs() of the
    current model, and every arm records its hardness in that shared space."""
    from batchsampler.integrations.graph import train as graph_train
    from batchsampler.integrations.graph.data import load_tu_dataset

    dataset = load_tu_dataset("MUTAG", tu_root)
    encodings = []
    real_embed = graph_train.embed_graphs

    def spy(model, graphs, batch_size=256):
        encoding = real_embed(model, graphs, batch_size)
        encodings.append(encoding)
        return encoding

    monkeypatch.setattr(graph_train, "embed_graphs", spy)
    monkeypatch.setattr(graph_train, "svm_accuracy", lambda *a, **k: (0.5, 0.0))
    result = graph_train.train_graphcl(dataset, graph_train.GraphCLConfig(epochs=2, batch_size=64, bank="encoded"))
    assert len(encodings) == 3  # one per epoch, then the final evaluation
    for record in result["epochs"]:
        assert record["encoded_relative_hardness"] is not None and record["relative_hardness"] is not None
    # The bank measure and the encoded measure coincide: the bank is that encoding.
    for record in result["epochs"]:
        assert record["relative_hardness"] == pytest.approx(record["encoded_relative_hardness"])
    assert result["epochs"][1]["graph_k"] is not None  # epoch 1 walked a graph built from the encoding


def test_on_step_sees_every_step_in_order_and_leaves_training_unchanged(mutag, no_svm, monkeypatch):
    from batchsampler.integrations import _arms as arms_module
    from batchsampler.integrations.graph import train as train_module
    from batchsampler.integrations.graph.train import embed_graphs

    config = GraphCLConfig(sampler="batchsampler", bank="encoded", epochs=2, batch_size=64, hidden=8, num_layers=2)
    plain = train_graphcl(mutag, config)
    seen, clock = [], [0.0]
    # A clock that moves only in the callback: train_seconds must not count the callback's time.
    fake_time = types.SimpleNamespace(perf_counter=lambda: clock[0])
    monkeypatch.setattr(train_module, "time", fake_time)
    monkeypatch.setattr(arms_module, "time", fake_time)  # where the callback is timed

    def on_step(epoch, step, indices, model, sampler):
        assert model.training  # called after the step, before the next forward
        seen.append((epoch, step, indices.tolist(), sampler.graph_version))
        embed_graphs(model, [mutag[i] for i in range(len(mutag))])  # eval mode; train_graphcl restores it
        clock[0] += 1000.0

    followed = train_graphcl(mutag, config, on_step=on_step)
    assert clock[0] == 6000.0 and followed["train_seconds"] == 0.0
    assert [(epoch, step) for epoch, step, _, _ in seen] == [(e, s) for e in range(2) for s in range(3)]
    for epoch in range(2):  # the step's indices are the epoch's batches, which cover the dataset once
        indices = [i for e, _, batch, _ in seen if e == epoch for i in batch]
        assert sorted(indices) == list(range(len(mutag)))
    assert seen[-1][3] >= 1  # the second epoch walked a graph
    assert [e["loss"] for e in followed["epochs"]] == [e["loss"] for e in plain["epochs"]]
    assert np.array_equal(no_svm[0], no_svm[1])  # same final embeddings: the callback changed nothing
