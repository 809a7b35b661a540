"""The ``head`` and ``bank`` settings of the SimCSE loop: what the loss, the bank and STS see."""

import copy
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from batchsampler.integrations.text.data import load_sts_sets, read_sentences

# Seconds per run: a 32-sentence slice, batches of 8, 8 tokens, the tiny STS sets.
FAST = {"steps": 2, "eval_every": 2, "batch_size": 8, "max_length": 8, "lr": 1e-3, "seed": 3}


@pytest.fixture(scope="module")
def tiny(tiny_data):
    root, _ = tiny_data
    return read_sentences(root / "corpus.txt.xz", limit=32), load_sts_sets(root)


@pytest.fixture(scope="module")
def encoder(encoder_available):
    from batchsampler.integrations.text.model import SentenceEncoder

    return SentenceEncoder(max_length=8)


@pytest.fixture(scope="module")
def initial(tiny, encoder):
    return encoder.encode(tiny[0])


@pytest.fixture
def spies(monkeypatch, encoder_available):
    """Records, per run, the encoder's training outputs, the head's inputs and outputs, the
    loss's inputs, every ``sampler.update`` and, at every graph build, the bank the graph was
    built from beside the current encoder's own sentence-transformers encoding of ``sentences``."""
    import batchsampler
    from batchsampler.integrations.text import train

    recorded = ("forwards", "head_calls", "loss_inputs", "updates", "builds", "encoders", "heads", "initial_heads")
    record = SimpleNamespace(sentences=None, **{name: [] for name in recorded})

    class RecordingEncoder(train.SentenceEncoder):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            record.encoders.append(self)

        def forward(self, sentences):
            out = super().forward(sentences)
            record.forwards.append(out.detach().clone())
            return out

    class RecordingHead(train.MLPHead):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            record.heads.append(self)
            record.initial_heads.append(copy.deepcopy(self))

        def forward(self, embeddings):
            out = super().forward(embeddings)
            record.head_calls.append((embeddings.detach().clone(), out.detach().clone()))
            return out

    real_get_loss = train.get_loss

    def get_loss(*args, **kwargs):
        loss_fn = real_get_loss(*args, **kwargs)

        def recording(a, b):
            record.loss_inputs.append((a.detach().clone(), b.detach().clone()))
            return loss_fn(a, b)

        recording.requires_labels = getattr(loss_fn, "requires_labels", False)
        return recording

    def recording_sampler(base):
        def update(self, indices, embeddings):
            rows = embeddings.detach().clone() if torch.is_tensor(embeddings) else np.array(embeddings)
            record.updates.append((np.asarray(indices), rows))
            base.update(self, indices, embeddings)

        def set_graph(self, graph):
            # Called by the inline build with the graph of the bank as it is now.
            encoding = None
            if record.sentences is not None:
                encoding = record.encoders[-1].model.encode(record.sentences, convert_to_numpy=True)
            record.builds.append((self.bank.numpy().copy(), encoding))
            base.set_graph(self, graph)

        namespace = {"update": update, **({"set_graph": set_graph} if hasattr(base, "set_graph") else {})}
        return type(f"Recording{base.__name__}", (base,), namespace)

    for name, base in list(batchsampler.SAMPLERS.items()):
        monkeypatch.setitem(batchsampler.SAMPLERS, name, recording_sampler(base))
    monkeypatch.setattr(train, "SentenceEncoder", RecordingEncoder)
    monkeypatch.setattr(train, "MLPHead", RecordingHead)
    monkeypatch.setattr(train, "get_loss", get_loss)

    def reset():
        for name in recorded:
            getattr(record, name).clear()
        return record

    record.reset = reset
    return record


def _run(tiny, initial, spies, **settings):
    from batchsampler.integrations.text.train import SimCSEConfig, train_simcse

    sentences, sets = tiny
    spies.reset()
    config = SimCSEConfig(**{"sampler": "uniform", **FAST, **settings})
    result = train_simcse(sentences, sets, config, initial_embeddings=initial)
    # A copy of the lists: the next run's reset() empties the spies' own.
    return result, SimpleNamespace(**{key: list(value) for key, value in vars(spies).items()
                                      if isinstance(value, list) and key != "sentences"})


def _halves(tensor):
    return tensor[: len(tensor) // 2], tensor[len(tensor) // 2:]


def test_mlp_head_is_simcse_pooler_and_leaves_the_global_generator_alone():
    from batchsampler.integrations.text.model import MLPHead

    state = torch.random.get_rng_state()
    head = MLPHead(16, seed=5)
    assert torch.equal(torch.random.get_rng_state(), state)  # the dropout masks do not move
    assert isinstance(head.dense, torch.nn.Linear) and isinstance(head.activation, torch.nn.Tanh)
    assert torch.equal(head.dense.weight, MLPHead(16, seed=5).dense.weight)
    assert not torch.equal(head.dense.weight, MLPHead(16, seed=6).dense.weight)
    assert torch.count_nonzero(head.dense.bias) == 0 and 0.01 < float(head.dense.weight.detach().std()) < 0.03
    x = torch.randn(3, 16, generator=torch.Generator().manual_seed(0)) * 50
    with torch.no_grad():
        out = head(x)
        assert out.shape == (3, 16) and torch.allclose(out, torch.tanh(x @ head.dense.weight.T + head.dense.bias))
    assert out.abs().max() <= 1  # tanh (float32 rounds its tails to 1)
    for bad, error, match in [({"dimension": 0}, ValueError, "dimension"), ({"dimension": 2.0}, TypeError, "dimension"),
                              ({"dimension": 4, "seed": "a"}, TypeError, "seed"),
                              ({"dimension": 4, "init_std": 0.0}, ValueError, "init_std")]:
        with pytest.raises(error, match=match):
            MLPHead(**bad)


def test_without_a_head_projection_and_backbone_are_the_rows_of_the_code_before_the_settings(tiny, initial, spies):
    runs = {bank: _run(tiny, initial, spies, bank=bank) for bank in ("projection", "backbone")}
    for bank, (result, record) in runs.items():
        assert result["config"]["head"] == "none" and result["config"]["bank"] == bank
        assert not record.heads and not record.head_calls  # no head is built
        assert np.array_equal(record.updates[0][1], initial)  # the seed, as given
        steps = record.updates[1:]
        assert len(steps) == len(record.forwards) == len(record.loss_inputs) == FAST["steps"]
        for (z1, z2), forward, (indices, rows) in zip(record.loss_inputs, record.forwards, steps):
            # The expressions of the code before the settings: the same numbers, not just close.
            assert torch.equal(z1, _halves(forward)[0]) and torch.equal(z2, _halves(forward)[1])
            assert torch.equal(rows, F.normalize(z1 + z2, dim=1)) and rows.shape == (len(indices), 384)
    (projection, p_record), (backbone, b_record) = runs["projection"], runs["backbone"]
    assert projection["losses"] == backbone["losses"] and projection["scores"] == backbone["scores"]
    for (_, p_rows), (_, b_rows) in zip(p_record.updates, b_record.updates):
        assert np.array_equal(np.asarray(p_rows), np.asarray(b_rows))  # one space without a head


def test_with_a_head_the_loss_and_the_projection_bank_see_its_outputs_the_backbone_bank_does_not(tiny, initial, spies):
    runs = {bank: _run(tiny, initial, spies, head="mlp", bank=bank) for bank in ("projection", "backbone", "both")}
    for bank, (result, record) in runs.items():
        assert result["config"]["head"] == "mlp" and result["config"]["bank"] == bank
        (head,), (start,) = record.heads, record.initial_heads
        assert not torch.equal(head.dense.weight, start.dense.weight)  # trained with the encoder
        calls = record.head_calls
        if bank != "backbone":  # the seed's projections: the initial head on the starting model's rows
            assert torch.equal(calls[0][0], torch.from_numpy(initial))
            calls = calls[1:]
        # One head call per view and step, on the encoder's rows; its outputs are what the loss sees.
        assert len(calls) == 2 * FAST["steps"]
        for step, ((p1, p2), forward) in enumerate(zip(record.loss_inputs, record.forwards)):
            (in1, out1), (in2, out2) = calls[2 * step: 2 * step + 2]
            assert torch.equal(in1, _halves(forward)[0]) and torch.equal(in2, _halves(forward)[1])
            assert torch.equal(p1, out1) and torch.equal(p2, out2)
            assert not torch.allclose(p1, in1, atol=1e-3)
        with torch.no_grad():
            seed_projection = F.normalize(start(torch.from_numpy(initial)), dim=1)
        seed_backbone = F.normalize(torch.from_numpy(initial), dim=1)
        seed = torch.as_tensor(record.updates[0][1])
        expected_seed = {"projection": seed_projection, "backbone": torch.from_numpy(initial),
                         "both": torch.cat([seed_projection, seed_backbone], dim=1) / 2 ** 0.5}[bank]
        assert seed.shape == expected_seed.shape and torch.allclose(seed, expected_seed, atol=1e-6)
        for (p1, p2), forward, (_, rows) in zip(record.loss_inputs, record.forwards, record.updates[1:]):
            projection, backbone = F.normalize(p1 + p2, dim=1), F.normalize(sum(_halves(forward)), dim=1)
            expected = {"projection": projection, "backbone": backbone,
                        "both": torch.cat([projection, backbone], dim=1) / 2 ** 0.5}[bank]
            assert rows.shape == expected.shape and torch.allclose(rows, expected, atol=1e-6)
            assert not torch.allclose(projection, backbone, atol=1e-2)  # two spaces with a head
    # The uniform sampler ignores the bank: the three runs trained alike.
    assert runs["projection"][0]["losses"] == runs["backbone"][0]["losses"] == runs["both"][0]["losses"]


def test_evaluation_and_model_selection_never_use_the_head(tiny, initial, encoder, spies):
    from batchsampler.integrations.text.evaluate import evaluate_sts
    from batchsampler.integrations.text.train import default_eval_names

    _, sets = tiny
    start = evaluate_sts(encoder.encode, sets, default_eval_names(sets))
    start_dev = evaluate_sts(encoder.encode, sets, ["STS-B dev"])["STS-B dev"]
    # lr=0: the encoder stays the starting model, so scores through the head (a random
    # d x d map) would differ from the starting model's.
    result, record = _run(tiny, initial, spies, head="mlp", bank="backbone", steps=1, eval_every=1, lr=0.0)
    assert len(record.head_calls) == 2  # the training step's two views only (a backbone seed needs no head)
    assert result["scores"] == pytest.approx(start, abs=1e-6)
    assert result["dev_history"][0]["dev"] == pytest.approx(start_dev, abs=1e-6)


def test_encoded_bank_is_the_eval_encoding_of_the_slice_at_every_refresh(tiny, initial, spies):
    sentences, _ = tiny
    spies.sentences = sentences
    try:
        result, record = _run(tiny, initial, spies, sampler="batchsampler", bank="encoded", head="mlp",
                              steps=5, eval_every=5, refresh_every=2)
    finally:
        spies.sentences = None
    num = len(sentences)
    # The seed, then the slice re-encoded before the rebuilds when batches 2 and 4 are drawn
    # (batch 4 opens the second epoch); no per-step rows.
    assert [len(indices) for indices, _ in record.updates] == [num, num, num]
    assert all(np.array_equal(indices, np.arange(num)) for indices, _ in record.updates)
    assert len(record.loss_inputs) == 5 and len(record.head_calls) == 10  # the loss still saw the head
    assert result["graph_builds"] == len(record.builds) == 3
    (first, _), *later = record.builds
    assert np.array_equal(first, initial)  # step 0: the starting model's encoding
    for bank, encoding in later:
        # Built from the current encoder's eval-mode encoding without the head (d = 384), not
        # from an earlier one: training moved the encoder well beyond the tolerance.
        assert bank.shape == (num, 384)
        np.testing.assert_allclose(bank, encoding, atol=1e-5)
        assert np.abs(bank - initial).max() > 1e-3
    assert np.abs(later[0][0] - later[1][0]).max() > 1e-3


def test_encoded_bank_is_not_re_encoded_for_a_sampler_without_a_graph(tiny, initial, spies):
    result, record = _run(tiny, initial, spies, bank="encoded", refresh_every=1)
    assert result["config"]["bank"] == "encoded"
    assert len(record.updates) == 1 and np.array_equal(record.updates[0][1], initial)  # the seed only


def test_text_arm_labels_keep_heads_and_banks_apart():
    from batchsampler.integrations.text.reproduce import markdown_table, text_arm_label

    assert text_arm_label({"sampler": "knn", "loss": "ntxent"}) == "knn"  # a record from before the settings
    assert text_arm_label({"sampler": "knn", "head": "mlp"}) == "knn (head=mlp)"
    assert text_arm_label({"sampler": "batchsampler", "bank": "backbone", "head": "mlp", "target_hardness": 0.5,
                           "replacement": True}) == "batchsampler (bank=backbone, target=0.5, replacement, head=mlp)"

    def run(score, **settings):
        return {"config": {"sampler": "uniform", "loss": "ntxent", **settings}, "scores": {"STS-B test": score},
                "best_dev": score, "best_step": 2, "batch_stats": {"mean_similarity": 0.1},
                "train_seconds": 1.0, "eval_seconds": 1.0}

    table = markdown_table([run(70.0), run(72.0, head="none", bank="projection"), run(60.0, head="mlp")])
    assert "| ntxent | uniform (n=2) | 71.00 ± 1.00 | 71.00 ± 1.00 |" in table
    assert "| ntxent | uniform (head=mlp) (n=1) | 60.00 ± 0.00 | 60.00 ± 0.00 |" in table
    assert table.splitlines()[-1].endswith("| — |")  # the authors' number beside the default arm only
    assert "77.79" in table.splitlines()[2]
