import numpy as np
import pytest
import torch

from batchsampler.integrations.text.data import load_sts_sets, read_sentences


@pytest.fixture(scope="module")
def encoder(encoder_available):
    from batchsampler.integrations.text.model import SentenceEncoder

    return SentenceEncoder(max_length=16)


@pytest.fixture(scope="module")
def tiny(tiny_data):
    root, _ = tiny_data
    return read_sentences(root / "corpus.txt.xz", limit=32), load_sts_sets(root)


def test_encoder_pools_like_the_model_and_dropout_makes_two_views(encoder):
    sentences = ["a man is playing a guitar .", "the cat sleeps ."]
    frozen = encoder.encode(sentences)
    assert frozen.shape == (2, encoder.dimension) == (2, 384)
    reference = encoder.model.encode(sentences, convert_to_numpy=True)  # sentence-transformers' own path
    np.testing.assert_allclose(frozen, reference, atol=1e-5)
    encoder.eval()
    with torch.no_grad():
        np.testing.assert_allclose(encoder(sentences).numpy(), frozen, atol=1e-5)
    encoder.train()
    torch.manual_seed(0)  # the masks come from the global generator, whatever earlier tests left in it
    with torch.no_grad():
        view1, view2 = encoder(sentences), encoder(sentences)
    assert not torch.allclose(view1, view2)  # dropout on: SimCSE's positive pair differs
    assert torch.nn.functional.cosine_similarity(view1, view2).min() > 0.8  # but stays close
    assert encoder.training  # encode() restored the mode it found


def test_encoder_rejects_tiny_max_length(encoder_available):
    from batchsampler.integrations.text.model import SentenceEncoder

    with pytest.raises(ValueError, match="max_length"):
        SentenceEncoder(max_length=1)


def test_train_smoke_updates_bank_graph_and_selects_on_dev(tiny, encoder_available):
    from batchsampler.integrations.text.train import SimCSEConfig, train_simcse

    sentences, sets = tiny
    config = SimCSEConfig(sampler="batchsampler", steps=3, eval_every=2, batch_size=8, max_length=12,
                          refresh_every=2, lr=1e-4, seed=1)
    result = train_simcse(sentences, sets, config)
    assert len(result["losses"]) == 3 and all(np.isfinite(result["losses"]))
    assert [h["step"] for h in result["dev_history"]] == [2, 3]  # every eval_every steps and the last
    assert result["best_dev"] == max(h["dev"] for h in result["dev_history"])
    assert set(result["scores"]) == {"STS12", "STS-B test", "SICK-R test", "avg"}
    assert result["graph_builds"] == 2  # at step 0 from the starting model, then after 2 batches
    assert result["batch_stats"]["num_indices"] == 24 and result["batch_stats"]["repeats"] == 0


def test_zero_learning_rate_reproduces_the_starting_model(tiny, encoder):
    from batchsampler.integrations.text.evaluate import evaluate_sts
    from batchsampler.integrations.text.train import SimCSEConfig, default_eval_names, train_simcse

    sentences, sets = tiny
    encoder.eval()
    start = evaluate_sts(encoder.encode, sets, default_eval_names(sets))
    result = train_simcse(sentences, sets, SimCSEConfig(sampler="uniform", steps=1, eval_every=1, batch_size=4,
                                                        max_length=8, lr=0.0),
                          initial_embeddings=np.zeros((len(sentences), 384), dtype=np.float32))
    assert result["scores"] == pytest.approx(start, abs=1e-6)
    assert result["graph_builds"] == 0


@pytest.mark.parametrize("bad, match", [
    ({"sampler": "random"}, "config.sampler"),
    ({"selection_set": "STS-B validation"}, "config.selection_set"),
    ({"batch_size": 1000}, "config.batch_size"),
    ({"steps": 0}, "config.steps"),
    ({"loss": "hscl"}, "needs labels"),
    ({"sampler": "uniform", "target_hardness": 0.5}, "config.target_hardness"),
    ({"target_hardness": 1.5}, r"config.target_hardness must be in \[0, 1\]"),
    ({"bank": "head"}, r"config.bank must be one of \['projection', 'backbone', 'both', 'encoded'\]"),
    ({"bank": None}, "config.bank must be one of"),
    ({"head": "linear"}, r"config.head must be one of \['none', 'mlp'\], got 'linear'"),
    ({"head": None}, "config.head must be one of"),
])
def test_bad_configuration_fails_before_any_work(tiny, bad, match, monkeypatch):
    from batchsampler.integrations.text import train

    def no_model(*args, **kwargs):
        raise AssertionError("the model must not be loaded for a bad configuration")

    monkeypatch.setattr(train, "SentenceEncoder", no_model)
    sentences, sets = tiny
    with pytest.raises(ValueError, match=match):
        train.train_simcse(sentences, sets, train.SimCSEConfig(**{"batch_size": 8, **bad}))
