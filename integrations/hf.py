"""Hard batches in HF ``transformers.Trainer``: a mixin (and a ready ``Trainer`` subclass).

``Trainer`` has no batch-sampler option and its collator drops the row indices. The smallest
correct way in is to override the two methods that matter:

* ``get_train_dataloader``: the training ``DataLoader`` uses the library's sampler (wrapped in
  a :class:`~batchsampler.FeedbackBatchSampler`), with the trainer's collator, column removal,
  workers and accelerate preparation. Evaluation dataloaders are left as they are.
* ``compute_loss``: after the trainer's own loss, the batch's embeddings (taken from the model
  outputs by ``embeddings_fn``) are fed back to the sampler, paired with the batch they came
  from; nothing is encoded twice.

Example::

    from batchsampler import BatchSampler
    from batchsampler.integrations.hf import HardBatchesTrainer

    trainer = HardBatchesTrainer(
        model=model, args=args, train_dataset=train, data_collator=collate,
        batch_sampler=lambda dataset: BatchSampler(dataset, args.per_device_train_batch_size,
                                                   refresh_every=100, seed=args.seed),
        embeddings_fn=lambda outputs, inputs: outputs["embeddings"],
    )
    trainer.train()

Pass the sampler as a factory (called with the training dataset when the dataloader is
built, after the trainer has set up ``torch.distributed``) or as a ready sampler. Under DDP
the sampler shards itself; accelerate's round-robin dealing of whole batches is met by yielding
each rank's slice ``world_size`` times (``FeedbackBatchSampler(replicas=world_size)``), so every
rank trains on its own slice of one global hard batch. The sampler's statistics (builds, build
and stall seconds, graph version) are added to the trainer's logs as ``batchsampler/...``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils.data import DataLoader

from batchsampler import FeedbackBatchSampler

try:
    from transformers import Trainer, TrainerCallback
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError('batchsampler.integrations.hf needs transformers: pip install "batchsampler[trainers]"') from error

__all__ = ["HardBatchesMixin", "HardBatchesTrainer", "batches_skipped_on_resume", "default_embeddings"]


def default_embeddings(outputs: Any, inputs: Any) -> torch.Tensor:
    """The batch's embeddings from model outputs: ``outputs["embeddings"]``, else the pooler
    output, else the attention-masked mean of the last hidden state.

    Raises:
        ValueError: if the outputs hold none of them (pass ``embeddings_fn``).
    """
    def get(name: str) -> Any:
        if isinstance(outputs, dict):
            return outputs.get(name)
        return getattr(outputs, name, None)

    for name in ("embeddings", "pooler_output"):
        value = get(name)
        if isinstance(value, torch.Tensor):
            return value
    hidden = get("last_hidden_state")
    if isinstance(hidden, torch.Tensor):
        mask = inputs.get("attention_mask") if isinstance(inputs, dict) else None
        if mask is None:
            return hidden.mean(dim=1)
        mask = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
    raise ValueError(
        "the model outputs hold no 'embeddings', 'pooler_output' or 'last_hidden_state': pass "
        "embeddings_fn=lambda outputs, inputs: ... to the trainer"
    )


class HardBatchesMixin:
    """Mix into a ``transformers.Trainer`` subclass (before it) to train on hard batches.

    Args:
        batch_sampler: a sampler of this package, or a factory ``dataset -> sampler`` called
            when the training dataloader is built (after ``torch.distributed`` is set up).
        embeddings_fn: ``(outputs, inputs) -> [B, d]`` tensor of the batch's embeddings
            (default :func:`default_embeddings`).
        *args, **kwargs: the ``Trainer``'s own.
    """

    def __init__(
        self,
        *args: Any,
        batch_sampler: Any,
        embeddings_fn: Callable[[Any, Any], torch.Tensor] | None = None,
        **kwargs: Any,
    ) -> None:
        if not (callable(getattr(batch_sampler, "update", None)) or callable(batch_sampler)):
            raise TypeError("batch_sampler must be a sampler of batchsampler or a factory dataset -> sampler")
        super().__init__(*args, **kwargs)
        self._hard_source = batch_sampler
        self.embeddings_fn = embeddings_fn or default_embeddings
        self.hard_batches: FeedbackBatchSampler | None = None
        """The training sampler, wrapped (set when the training dataloader is built)."""
        self.add_callback(_StatisticsCallback(self))

    def _hard_sampler(self, dataset: Any) -> FeedbackBatchSampler:
        if self.hard_batches is None:
            source = self._hard_source
            sampler = source if callable(getattr(source, "update", None)) else source(dataset)
            if len(dataset) != sampler.num_instances:
                raise ValueError(f"the sampler covers {sampler.num_instances} instances, the training set has {len(dataset)}")
            self.hard_batches = FeedbackBatchSampler(sampler, replicas=self.accelerator.num_processes)
        return self.hard_batches

    def get_train_dataloader(self) -> DataLoader:
        if self.train_dataset is None:
            raise ValueError("Trainer: training requires a train_dataset.")
        dataset, collator = self.train_dataset, self.data_collator
        try:
            import datasets

            is_hf_dataset = isinstance(dataset, datasets.Dataset)
        except ImportError:
            is_hf_dataset = False
        if is_hf_dataset:
            dataset = self._remove_unused_columns(dataset, description="Training")
        else:
            collator = self._get_collator_with_removed_columns(collator, description="Training")
        args = self.args
        params: dict[str, Any] = {
            "batch_sampler": self._hard_sampler(dataset),
            "collate_fn": collator,
            "num_workers": args.dataloader_num_workers,
            "pin_memory": args.dataloader_pin_memory,
            "persistent_workers": args.dataloader_persistent_workers and args.dataloader_num_workers > 0,
        }
        if args.dataloader_num_workers > 0 and args.dataloader_prefetch_factor is not None:
            params["prefetch_factor"] = args.dataloader_prefetch_factor
        return self.accelerator.prepare(DataLoader(dataset, **params))

    def compute_loss(
        self, model: Any, inputs: Any, return_outputs: bool = False, num_items_in_batch: Any = None
    ) -> Any:
        loss, outputs = super().compute_loss(
            model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch
        )
        if self.hard_batches is not None and model.training and torch.is_grad_enabled():
            self.hard_batches.update(self.embeddings_fn(outputs, inputs).detach())
        return (loss, outputs) if return_outputs else loss


class HardBatchesTrainer(HardBatchesMixin, Trainer):
    """``transformers.Trainer`` on hard batches (see :class:`HardBatchesMixin`)."""


def batches_skipped_on_resume(args: Any, state: Any, batches_per_epoch: int) -> int:
    """Batches a ``Trainer`` resuming at ``state.global_step`` replays and discards before its
    first training step (its own arithmetic: ``skip_first_batches`` of the steps trained in the
    current epoch, times the gradient accumulation)."""
    if getattr(args, "ignore_data_skip", False) or not state.global_step:
        return 0
    accumulation = max(1, args.gradient_accumulation_steps)
    updates_per_epoch = max(batches_per_epoch // accumulation + int(batches_per_epoch % accumulation > 0), 1)
    return (state.global_step % updates_per_epoch) * accumulation


class _StatisticsCallback(TrainerCallback):
    def __init__(self, trainer: HardBatchesMixin) -> None:
        self.trainer = trainer

    def on_train_begin(self, args: Any, state: Any, control: Any, train_dataloader: Any = None, **kwargs: Any) -> None:
        feedback = self.trainer.hard_batches
        if feedback is not None and train_dataloader is not None:
            feedback.skip_next(batches_skipped_on_resume(args, state, len(train_dataloader)))

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        feedback = self.trainer.hard_batches
        if logs is None or feedback is None or not hasattr(feedback.base_sampler, "refresh_stats"):
            return
        sampler = feedback.base_sampler
        stats = {
            "batchsampler/builds": float(sampler.refresh_stats.builds),
            "batchsampler/build_seconds": sampler.refresh_stats.build_seconds,
            "batchsampler/stall_seconds": sampler.refresh_stats.stall_seconds,
            "batchsampler/graph_version": float(sampler.graph_version),
        }
        logs.update(stats)
        if state.log_history:
            state.log_history[-1].update(stats)
