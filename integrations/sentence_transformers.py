"""Hard batches inside sentence-transformers' ``SentenceTransformerTrainer`` (v3 and later).

Five lines::

    from batchsampler.integrations.sentence_transformers import HardBatches

    hard = HardBatches(refresh_every=100)
    args = SentenceTransformerTrainingArguments(..., batch_sampler=hard)
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=train,
                                         loss=MultipleNegativesRankingLoss(model))
    hard.attach(trainer)          # wraps the loss, adds the callback
    trainer.train()

How the pieces fit:

* **The batch sampler.** The trainer calls ``HardBatches`` with its own signature
  (``dataset, batch_size, drop_last, valid_label_columns, generator, seed``); it returns a
  :class:`~batchsampler.BatchSampler` over the dataset's rows, seeded with the trainer's
  ``seed``, with the trainer's per-device ``batch_size`` and ``drop_last``, wrapped in a
  :class:`~batchsampler.FeedbackBatchSampler`. Every row appears once per epoch and ``len()``
  is exact.
* **Refresh from the training forward pass, no extra encoding.** The trainer's collator drops
  the row indices, so :meth:`HardBatches.attach` wraps the loss (:class:`HardBatchesLoss`):
  during the loss's own forward pass it captures the anchor column's embeddings (a forward hook
  on the model; CachedMultipleNegativesRankingLoss's mini-batches are stitched back together)
  and hands them to the feedback sampler, which pairs them with the oldest batch it yielded and
  not yet fed back. A ``DataLoader`` delivers batches in the order the batch sampler yields
  them, workers or not, so the pairing is exact; every call also checks the row count.
  Gradient accumulation needs nothing special: each micro-batch is one yielded batch and one
  loss call. ``refresh_encode_every`` adds a full re-encoding pass of the anchor column
  (``model.encode``) every that many steps, for losses whose embeddings cannot be captured.
* **The refresh schedule** (:class:`HardBatchesCallback`): batches are uniform during
  ``warmup_steps`` optimizer steps (default: one epoch) while the bank fills; from then on a
  background graph build is requested every ``refresh_every`` steps and swapped in
  ``swap_delay`` produced batches later (deterministic, identical on every rank). The
  sampler's statistics (builds, build seconds, stall seconds, in-batch hardness of the
  anchors, duplicates left) are added to the trainer's logs as ``batchsampler/...``.
* **No duplicate texts** (``no_duplicates=True``, as ``BatchSamplers.NO_DUPLICATES``): a batch
  should not hold the same text twice in any column. The walk does not know texts, so each
  batch is repaired before it is yielded: a row whose text is already in its batch is swapped
  with a row of one of the next ``lookahead`` batches where both rows fit. Swaps keep every
  batch's size and keep every row exactly once per epoch, so the epoch guarantees and ``len()``
  are untouched. What can remain is a duplicate that no swap within the window removes (near
  the end of an epoch, where few batches are left): it is counted in
  ``batchsampler/duplicates_left`` rather than fixed by dropping or repeating rows. The
  lookahead makes the sampler produce ``lookahead`` batches ahead of the loader, which delays
  a new graph's effect by as many batches.
* **Distributed** (DDP through accelerate): the sampler shards itself (one global batch of
  ``batch_size * world_size`` rows, each rank its slice, identical graphs on every rank), and
  since accelerate deals whole batches out to ranks round-robin, every slice is yielded
  ``world_size`` times so each rank receives its own (:class:`FeedbackBatchSampler`'s
  ``replicas``). Feedback ``update`` calls are collectives: every rank's loss runs once per
  micro-batch, so they stay in step.

Evaluation datasets: the trainer calls the batch sampler for them too. Once training has
started they get uniform batches (a :class:`~batchsampler.UniformBatchSampler`, no graph), or a
plain sequential batch sampler when they hold fewer rows than one global batch.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import BatchSampler as TorchBatchSampler
from torch.utils.data import SequentialSampler

from batchsampler import BatchSampler, FeedbackBatchSampler, UniformBatchSampler, scaled_graph_size
from batchsampler._validation import check_int
from batchsampler.integrations.hf import batches_skipped_on_resume

try:
    from transformers import TrainerCallback
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        'batchsampler.integrations.sentence_transformers needs transformers and sentence-transformers: '
        'pip install "batchsampler[text]"'
    ) from error

__all__ = ["HardBatches", "HardBatchesCallback", "HardBatchesLoss", "repair_duplicates"]

logger = logging.getLogger(__name__)


class HardBatches:
    """A ``batch_sampler`` for ``SentenceTransformerTrainingArguments`` that yields hard batches.

    Args:
        k, m: graph size (default: :func:`~batchsampler.scaled_graph_size` of the dataset,
            the paper's K = 100, M = 1000 from 2000 rows on).
        restart_prob: alpha of the walk (default 0.2).
        refresh_every: optimizer steps between graph builds after the warm-up (default 100).
        warmup_steps: optimizer steps of uniform batches before the first build (default:
            one epoch).
        embed_column: the dataset column whose embeddings fill the bank (default: the first
            column the loss receives, the anchor).
        no_duplicates: repair batches so that no text repeats within a batch (default True).
        lookahead: batches a repair may swap rows with (default 8).
        refresh_encode_every: if set, every this many steps re-encode the whole
            ``embed_column`` with ``model.encode`` and rebuild the graph (an extra pass; for
            losses whose forward pass cannot be captured).
        **sampler_options: passed to :class:`~batchsampler.BatchSampler` (e.g. ``swap_delay``,
            ``lockstep_batches``, ``backend``).

    Raises:
        ValueError, TypeError: on bad arguments (before the trainer starts).
    """

    def __init__(
        self,
        k: int | None = None,
        m: int | None = None,
        restart_prob: float = 0.2,
        refresh_every: int = 100,
        warmup_steps: int | None = None,
        embed_column: str | None = None,
        no_duplicates: bool = True,
        lookahead: int = 8,
        refresh_encode_every: int | None = None,
        **sampler_options: Any,
    ) -> None:
        for name in ("replacement", "distributed", "data", "batch_size", "seed", "drop_last", "refresh_every"):
            if name in sampler_options:
                raise TypeError(f"{name} is set by the trainer or by HardBatches itself, not through sampler_options")
        self.k = None if k is None else check_int("k", k, low=1)
        self.m = None if m is None else check_int("m", m, low=1)
        self.restart_prob = restart_prob
        self.refresh_every = check_int("refresh_every", refresh_every, low=1)
        self.warmup_steps = None if warmup_steps is None else check_int("warmup_steps", warmup_steps, low=0)
        if embed_column is not None and not isinstance(embed_column, str):
            raise TypeError(f"embed_column must be a column name or None, got {type(embed_column).__name__}")
        self.embed_column = embed_column
        if not isinstance(no_duplicates, bool):
            raise TypeError(f"no_duplicates must be a bool, got {type(no_duplicates).__name__}")
        self.no_duplicates = no_duplicates
        self.lookahead = check_int("lookahead", lookahead, low=1)
        self.refresh_encode_every = (
            None if refresh_encode_every is None else check_int("refresh_encode_every", refresh_encode_every, low=1)
        )
        self.sampler_options = sampler_options
        self.feedback: FeedbackBatchSampler | None = None
        """The training sampler (set by the callback when training starts)."""
        self.created: list[FeedbackBatchSampler] = []
        self.anchor_column: int = 0
        self.duplicates_left = 0
        self._hardness: list[float] = []
        self._datasets: dict[int, Any] = {}

    # ------------------------------------------------------------------ the trainer's call

    def __call__(
        self,
        dataset: Any,
        batch_size: int,
        drop_last: bool = False,
        valid_label_columns: Sequence[str] | None = None,
        generator: torch.Generator | None = None,
        seed: int = 0,
    ) -> Any:
        """The batch sampler for ``dataset`` (the trainer's signature; ``generator`` is unused:
        all randomness derives from ``seed``)."""
        world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
        n = len(dataset)
        if batch_size * world > n:
            # An evaluation set smaller than one global batch: nothing to sample.
            return TorchBatchSampler(SequentialSampler(range(n)), batch_size, drop_last)
        if self.feedback is not None:
            # Training has started: this is an evaluation set. Uniform batches, and no graph
            # machinery (a distributed graph sampler would open a gloo build group per call).
            return FeedbackBatchSampler(UniformBatchSampler(n, batch_size, drop_last=drop_last, seed=seed), replicas=world)
        k, m = scaled_graph_size(n, self.k, self.m)
        sampler = BatchSampler(
            n, batch_size, k=min(k, n - 1), m=max(m, min(k, n - 1)), restart_prob=self.restart_prob,
            drop_last=drop_last, seed=seed, **self.sampler_options,
        )
        columns = [c for c in dataset.column_names if c not in set(valid_label_columns or ())]
        transform = None
        if self.no_duplicates:
            row_texts = _row_text_ids(dataset, columns)
            transform = lambda batches: repair_duplicates(batches, row_texts, self.lookahead, self)  # noqa: E731
        feedback = FeedbackBatchSampler(sampler, replicas=world, transform=transform)
        self.created.append(feedback)
        self._datasets[id(feedback)] = (dataset, columns)
        return feedback

    # ------------------------------------------------------------------ wiring

    def wrap(self, loss: nn.Module) -> HardBatchesLoss:
        """``loss`` wrapped so that its forward pass feeds the anchor embeddings back."""
        return HardBatchesLoss(loss, self)

    def callback(self) -> HardBatchesCallback:
        """The trainer callback that runs the refresh schedule and logs the statistics."""
        return HardBatchesCallback(self)

    def attach(self, trainer: Any) -> Any:
        """Wrap ``trainer.loss`` and put the callback first (so that the logs it adds reach the
        reporting callbacks); returns ``trainer``.

        Raises:
            TypeError: if the trainer holds one loss per dataset (a dict): wrap them yourself.
        """
        if isinstance(trainer.loss, dict):
            raise TypeError("trainer.loss is a dict of losses: wrap each with hard.wrap(loss) and add hard.callback()")
        if not isinstance(trainer.loss, HardBatchesLoss):
            trainer.loss = self.wrap(trainer.loss)
        trainer.callback_handler.callbacks.insert(0, self.callback())
        return trainer

    def _activate(self, train_dataloader: Any) -> None:
        found = _find_feedback(train_dataloader)
        if found is None:
            raise RuntimeError(
                "the training DataLoader has no HardBatches sampler: pass batch_sampler=HardBatches(...) "
                "to the training arguments (the same object you attach)"
            )
        self.feedback = found
        dataset, columns = self._datasets[id(found)]
        self.anchor_column = columns.index(self.embed_column) if self.embed_column in columns else 0
        if self.embed_column is not None and self.embed_column not in columns:
            raise ValueError(f"embed_column {self.embed_column!r} is not a text column of the dataset: {columns}")

    def _anchor_texts(self) -> list[str]:
        dataset, columns = self._datasets[id(self.feedback)]
        return list(dataset[columns[self.anchor_column]])

    def statistics(self) -> dict[str, float]:
        """What the callback logs (``batchsampler/`` keys), since the last call for hardness."""
        if self.feedback is None:
            return {}
        sampler = self.feedback.base_sampler
        stats = sampler.refresh_stats
        logs = {
            "batchsampler/builds": float(stats.builds),
            "batchsampler/build_seconds": stats.build_seconds,
            "batchsampler/stall_seconds": stats.stall_seconds,
            "batchsampler/graph_version": float(sampler.graph_version),
            "batchsampler/duplicates_left": float(self.duplicates_left),
        }
        if self._hardness:
            logs["batchsampler/hardness"] = float(np.mean(self._hardness))
            self._hardness.clear()
        return logs


class HardBatchesLoss(nn.Module):
    """Wraps a sentence-transformers loss: computes it, then feeds the anchor embeddings back.

    The anchor embeddings come from the loss's own forward pass: a forward hook on the model
    keeps the output for the anchor features (or for the mini-batches CachedMNRL cuts from
    them, stitched back by row offset). If a loss never embeds the anchors itself, they are
    encoded once more without gradients (logged once). Nothing is fed back outside training
    (evaluation, ``torch.no_grad``).
    """

    def __init__(self, loss: nn.Module, hard: HardBatches) -> None:
        super().__init__()
        self.loss = loss
        self.hard = hard
        self._warned = False

    @property
    def model(self) -> nn.Module:
        return self.loss.model

    def forward(self, sentence_features: Any, labels: Any) -> torch.Tensor:
        features = list(sentence_features)
        feedback = self.hard.feedback
        model = self.loss.model
        if feedback is None or not (model.training and torch.is_grad_enabled()):
            return self.loss(features, labels)
        anchor = features[self.hard.anchor_column]
        capture = _AnchorCapture(anchor)
        handle = model.register_forward_hook(capture.hook)
        try:
            value = self.loss(features, labels)
        finally:
            handle.remove()
        embeddings = capture.embeddings()
        if embeddings is None:
            if not self._warned:
                logger.warning("%s did not embed the anchors itself: encoding them once more", type(self.loss).__name__)
                self._warned = True
            with torch.no_grad():
                embeddings = model(dict(anchor))["sentence_embedding"]
        embeddings = embeddings.detach()
        self.hard._hardness.append(_mean_offdiagonal_cosine(embeddings))
        feedback.update(embeddings)
        return value


class HardBatchesCallback(TrainerCallback):
    """Runs the refresh schedule of :class:`HardBatches` and logs its statistics."""

    def __init__(self, hard: HardBatches) -> None:
        self.hard = hard
        self._warmup = 0

    def on_train_begin(self, args: Any, state: Any, control: Any, train_dataloader: Any = None, **kwargs: Any) -> None:
        self.hard._activate(train_dataloader)
        self.hard.feedback.skip_next(batches_skipped_on_resume(args, state, len(train_dataloader)))
        steps_per_epoch = max(1, math.ceil(len(train_dataloader) / max(1, args.gradient_accumulation_steps)))
        self._warmup = self.hard.warmup_steps if self.hard.warmup_steps is not None else steps_per_epoch

    def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        hard, step = self.hard, state.global_step
        sampler = hard.feedback.base_sampler
        if hard.refresh_encode_every is not None and step % hard.refresh_encode_every == 0:
            self._encode_and_refresh(model)
        elif step >= self._warmup and (step - self._warmup) % hard.refresh_every == 0:
            sampler.refresh(blocking=False)  # every rank, at the same step

    def _encode_and_refresh(self, model: Any) -> None:
        hard = self.hard
        texts = hard._anchor_texts()
        was_training = model.training
        try:
            hard.feedback.base_sampler.refresh_from(
                lambda batch: model.encode(list(batch), convert_to_tensor=True, batch_size=len(batch)),
                texts, collate_fn=list,
            )
        finally:
            model.train(was_training)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if logs is None:
            return
        stats = self.hard.statistics()
        logs.update(stats)
        if state.log_history:
            state.log_history[-1].update(stats)


# ---------------------------------------------------------------------- helpers


class _AnchorCapture:
    """Forward hook that keeps the sentence embeddings computed for the anchor features."""

    def __init__(self, anchor: dict[str, Any]) -> None:
        self.anchor = anchor
        ids = anchor.get("input_ids")
        self.ids = ids if isinstance(ids, torch.Tensor) and ids.dim() == 2 else None
        self.rows = None if self.ids is None else self.ids.shape[0]
        self.full: torch.Tensor | None = None
        self.pieces: dict[int, torch.Tensor] = {}

    def hook(self, module: nn.Module, args: tuple, output: Any) -> None:
        if self.full is not None or not args or not isinstance(output, dict) or "sentence_embedding" not in output:
            return
        inputs, embedding = args[0], output["sentence_embedding"]
        if inputs is self.anchor:
            self.full = embedding
            return
        ids = inputs.get("input_ids") if isinstance(inputs, dict) else None
        if self.ids is None or not isinstance(ids, torch.Tensor) or ids.dim() != 2:
            return
        if ids.untyped_storage().data_ptr() != self.ids.untyped_storage().data_ptr():
            return
        # A row slice of the anchor features (CachedMNRL's mini-batches): its offset in rows.
        offset, stride = ids.storage_offset() - self.ids.storage_offset(), self.ids.stride(0)
        if stride and offset % stride == 0 and ids.stride(0) == stride:
            self.pieces.setdefault(offset // stride, embedding)

    def embeddings(self) -> torch.Tensor | None:
        if self.full is not None:
            return self.full
        if not self.pieces or self.rows is None:
            return None
        ordered, expected = [], 0
        for start in sorted(self.pieces):
            if start != expected:
                return None
            ordered.append(self.pieces[start])
            expected += self.pieces[start].shape[0]
        return torch.cat(ordered) if expected == self.rows else None


def _mean_offdiagonal_cosine(embeddings: torch.Tensor) -> float:
    n = embeddings.shape[0]
    if n < 2:
        return 0.0
    unit = torch.nn.functional.normalize(embeddings.float(), dim=1)
    gram = unit @ unit.T
    return float((gram.sum() - gram.diagonal().sum()) / (n * (n - 1)))


def _find_feedback(loader: Any) -> FeedbackBatchSampler | None:
    """The FeedbackBatchSampler inside a (possibly accelerate-wrapped) DataLoader."""
    node, seen = getattr(loader, "batch_sampler", None), 0
    while node is not None and seen < 8:  # DataLoaderShard -> BatchSamplerShard -> ours
        if isinstance(node, FeedbackBatchSampler):
            return node
        node, seen = getattr(node, "batch_sampler", None), seen + 1
    return None


def _row_text_ids(dataset: Any, columns: Sequence[str]) -> list[frozenset[int]]:
    """Per row, the ids of its distinct texts over ``columns`` (equal texts, equal ids)."""
    ids: dict[str, int] = {}
    per_column = []
    for column in columns:
        values = dataset[column]
        if values and isinstance(values[0], str):
            per_column.append([ids.setdefault(text, len(ids)) for text in values])
    return [frozenset(row) for row in zip(*per_column)] if per_column else [frozenset()] * len(dataset)


def repair_duplicates(
    batches: Iterator[list[int]], row_texts: Sequence[frozenset[int]], lookahead: int, counter: Any = None
) -> Iterator[list[int]]:
    """Yield ``batches`` with rows swapped between nearby batches so no text repeats in a batch.

    Each batch is repaired when it leaves a window of ``lookahead + 1`` batches: a row that
    shares a text with an earlier row of its batch is swapped with the first row of a later
    window batch that fits in both places. Sizes and the set of rows are unchanged (every row
    still appears exactly once). Duplicates no swap can remove are left and counted on
    ``counter.duplicates_left`` when given. Deterministic.
    """
    window: list[list[int]] = []
    source = iter(batches)
    exhausted = False
    while True:
        while not exhausted and len(window) <= lookahead:
            try:
                window.append(list(next(source)))
            except StopIteration:
                exhausted = True
        if not window:
            return
        left = _repair_first(window, row_texts)
        if counter is not None and left:
            counter.duplicates_left += left
        yield window.pop(0)


def _repair_first(window: list[list[int]], row_texts: Sequence[frozenset[int]]) -> int:
    """Swap rows out of ``window[0]`` until no text repeats in it; returns the repeats left."""
    first = window[0]
    counts: dict[int, int] = {}
    for row in first:
        for text in row_texts[row]:
            counts[text] = counts.get(text, 0) + 1
    for position, row in enumerate(first):
        texts = row_texts[row]
        if all(counts[text] == 1 for text in texts):
            continue
        swapped = False
        for other in window[1:]:
            other_counts: dict[int, int] | None = None
            for slot, candidate in enumerate(other):
                fresh = row_texts[candidate]
                # The candidate must bring no text the batch already has (besides this row's).
                if any(counts.get(text, 0) - (text in texts) > 0 for text in fresh):
                    continue
                if other_counts is None:
                    other_counts = {}
                    for member in other:
                        for text in row_texts[member]:
                            other_counts[text] = other_counts.get(text, 0) + 1
                if any(other_counts.get(text, 0) - (text in fresh) > 0 for text in texts):
                    continue
                for text in texts:
                    counts[text] -= 1
                for text in fresh:
                    counts[text] = counts.get(text, 0) + 1
                first[position], other[slot] = candidate, row
                swapped = True
                break
            if swapped:
                break
    return sum(count - 1 for count in counts.values() if count > 1)
