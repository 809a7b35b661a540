"""STS evaluation: Spearman correlation (x100) between cosine similarity and gold scores.

STS12-STS16 are scored in SimCSE's "all" setting: the subsets (topics) of a year are pooled and
one correlation is computed over all their pairs (:func:`~batchsampler.integrations.text.data.load_senteval_sts`
already concatenates them). STS-B and SICK-R are scored per split.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence

import numpy as np
from scipy.stats import spearmanr

from .data import STSPairs

__all__ = ["cosine_scores", "evaluate_sts", "spearman_x100"]

logger = logging.getLogger(__name__)

EncodeFn = Callable[[Sequence[str]], np.ndarray]
"""Maps ``n`` sentences to an ``[n, d]`` array."""


def spearman_x100(predicted: Sequence[float], gold: Sequence[float]) -> float:
    """Spearman rank correlation of ``predicted`` with ``gold``, times 100 (SimCSE's unit).

    Raises:
        ValueError: on different lengths, fewer than 2 pairs, or constant inputs (undefined).
    """
    predicted, gold = np.asarray(predicted, dtype=np.float64), np.asarray(gold, dtype=np.float64)
    if predicted.shape != gold.shape or predicted.ndim != 1:
        raise ValueError(f"predicted and gold must be 1-D of the same length, got {predicted.shape} and {gold.shape}")
    if len(gold) < 2:
        raise ValueError(f"predicted and gold need at least 2 pairs, got {len(gold)}")
    if np.ptp(predicted) == 0 or np.ptp(gold) == 0:
        raise ValueError("predicted and gold must not be constant (the correlation is undefined)")
    return float(100.0 * spearmanr(predicted, gold).statistic)


def cosine_scores(pairs: STSPairs, encode: EncodeFn) -> np.ndarray:
    """Cosine similarity ``[n]`` of every pair; each distinct sentence is encoded once.

    Raises:
        ValueError: if ``encode`` does not return one row per sentence.
    """
    unique = list(dict.fromkeys(pairs.sentences1 + pairs.sentences2))
    embeddings = np.asarray(encode(unique), dtype=np.float64)
    if embeddings.ndim != 2 or embeddings.shape[0] != len(unique):
        raise ValueError(f"encode must return [{len(unique)}, d] for {len(unique)} sentences, got {embeddings.shape}")
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    embeddings = embeddings / np.maximum(norms, 1e-12)
    row = {sentence: i for i, sentence in enumerate(unique)}
    first = embeddings[[row[s] for s in pairs.sentences1]]
    second = embeddings[[row[s] for s in pairs.sentences2]]
    return np.einsum("nd,nd->n", first, second)


def evaluate_sts(encode: EncodeFn, sets: Mapping[str, STSPairs], names: Sequence[str] | None = None) -> dict[str, float]:
    """Spearman x100 of cosine similarity vs gold, per STS set.

    Args:
        encode: sentences -> ``[n, d]`` embeddings (e.g. :meth:`SentenceEncoder.encode`).
        sets: ``{name: pairs}`` as from :func:`~batchsampler.integrations.text.data.load_sts_sets`.
        names: the sets to score (default: all), in this order.

    Returns:
        ``{name: score}``, plus ``"avg"`` (the mean over the scored sets) when there are several.

    Raises:
        KeyError: if a name in ``names`` is not in ``sets``.
    """
    names = list(sets) if names is None else list(names)
    missing = [n for n in names if n not in sets]
    if missing:
        raise KeyError(f"names must be STS sets that were loaded ({sorted(sets)}), got {missing}")
    scores = {name: spearman_x100(cosine_scores(sets[name], encode), sets[name].scores) for name in names}
    if len(scores) > 1:
        scores["avg"] = float(np.mean(list(scores.values())))
    logger.info("STS: %s", ", ".join(f"{k} {v:.2f}" for k, v in scores.items()))
    return scores
