import numpy as np
import pytest

from batchsampler.integrations.text.data import STSPairs
from batchsampler.integrations.text.evaluate import cosine_scores, evaluate_sts, spearman_x100


def test_spearman_identities():
    gold = np.array([0.5, 3.0, 1.0, 4.5, 2.0])
    assert spearman_x100(gold, gold) == pytest.approx(100.0)
    assert spearman_x100(np.exp(gold), gold) == pytest.approx(100.0)  # rank-based
    assert spearman_x100(-gold, gold) == pytest.approx(-100.0)
    with pytest.raises(ValueError, match="same length"):
        spearman_x100([1.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="constant"):
        spearman_x100([1.0, 1.0, 1.0], [1.0, 2.0, 3.0])


def _pairs(gold):
    return STSPairs("toy", [f"left {i}" for i in range(len(gold))], [f"right {i}" for i in range(len(gold))], gold)


def _angle_encoder(pairs, sign=1.0, calls=None):
    # Left sentences at angle 0, right ones at an angle that shrinks as gold grows: cosine
    # similarity is a monotone function of gold (sign=-1 reverses it).
    table = {}
    for s1, s2, g in zip(pairs.sentences1, pairs.sentences2, pairs.scores):
        angle = ((5.0 - g) if sign > 0 else g) * np.pi / 12  # within [0, 5 pi / 12]
        table[s1], table[s2] = [1.0, 0.0], [np.cos(angle), np.sin(angle)]

    def encode(sentences):
        if calls is not None:
            calls.append(list(sentences))
        return np.array([table[s] for s in sentences]) * 3.0  # scale must not matter

    return encode


def test_perfect_scorer_gives_100_and_reversed_gives_minus_100():
    pairs = _pairs(np.array([0.0, 1.2, 4.8, 2.5, 3.3, 0.7]))
    assert evaluate_sts(_angle_encoder(pairs), {"toy": pairs}) == {"toy": pytest.approx(100.0)}
    assert evaluate_sts(_angle_encoder(pairs, -1.0), {"toy": pairs})["toy"] == pytest.approx(-100.0)


def test_each_distinct_sentence_is_encoded_once_and_avg_is_reported():
    gold = np.array([1.0, 2.0, 3.0, 4.0])
    pairs = STSPairs("dup", ["same", "same", "x", "y"], ["p", "q", "same", "z"], gold)
    vectors = {"same": [1, 0], "p": [1, 1], "q": [1, 2], "x": [1, 3], "y": [0, 1], "z": [0, 1]}
    calls = []

    def encode(sentences):
        calls.append(list(sentences))
        return np.array([vectors[s] for s in sentences], dtype=float)

    scores = cosine_scores(pairs, encode)
    assert len(calls) == 1 and sorted(calls[0]) == sorted(vectors)
    assert scores[-1] == pytest.approx(1.0) and scores[0] == pytest.approx(1 / np.sqrt(2))
    other = _pairs(np.array([0.0, 1.0, 2.0]))
    result = evaluate_sts(lambda s: encode(s) if s[0] in vectors else _angle_encoder(other)(s),
                          {"dup": pairs, "toy": other})
    assert result["avg"] == pytest.approx((result["dup"] + result["toy"]) / 2)
    with pytest.raises(KeyError, match="names"):
        evaluate_sts(encode, {"dup": pairs}, ["STS-B test"])


def test_encoder_with_wrong_row_count_is_rejected():
    pairs = _pairs(np.array([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match="encode must return"):
        cosine_scores(pairs, lambda s: np.zeros((1, 4)))
