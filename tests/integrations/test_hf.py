"""HardBatchesTrainer: transformers.Trainer on hard batches, fed back from compute_loss."""

import os

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

pytest.importorskip("transformers")
pytest.importorskip("accelerate")

from transformers import TrainingArguments  # noqa: E402

from batchsampler import BatchSampler  # noqa: E402
from batchsampler.integrations.hf import HardBatchesTrainer, default_embeddings  # noqa: E402

N, B = 120, 8


class Points(Dataset):
    """Noisy copies of 6 cluster centres; items are dicts without their index."""

    def __init__(self):
        rng = np.random.default_rng(0)
        centres = rng.standard_normal((6, 12)) * 3
        self.x = torch.from_numpy((centres[np.arange(N) % 6] + rng.standard_normal((N, 12))).astype(np.float32))

    def __len__(self):
        return N

    def __getitem__(self, index):
        return {"x": self.x[index]}


class Contrastive(nn.Module):
    """Two noisy views, NT-Xent; returns the loss and the first view's embeddings."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.encoder = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 8))

    def forward(self, x):
        z1, z2 = self.encoder(x + 0.1 * torch.randn_like(x)), self.encoder(x + 0.1 * torch.randn_like(x))
        u = nn.functional.normalize(torch.cat([z1, z2]), dim=1)
        logits = u @ u.T / 0.5
        logits.fill_diagonal_(-1e9)
        n = x.shape[0]
        targets = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
        return {"loss": nn.functional.cross_entropy(logits, targets), "embeddings": self.encoder(x)}


@pytest.mark.parametrize("workers", [0, 2])
def test_the_trainer_feeds_every_batch_back_to_its_rows(tmp_path, workers):
    os.environ.setdefault("WANDB_DISABLED", "true")
    args = TrainingArguments(output_dir=str(tmp_path), num_train_epochs=3, per_device_train_batch_size=B,
                             dataloader_num_workers=workers, logging_steps=5, save_strategy="no", report_to=[],
                             use_cpu=True, remove_unused_columns=False, disable_tqdm=True, seed=3)
    trainer = HardBatchesTrainer(
        model=Contrastive(), args=args, train_dataset=Points(),
        data_collator=lambda items: {"x": torch.stack([item["x"] for item in items])},
        batch_sampler=lambda dataset: BatchSampler(dataset, B, k=5, m=30, refresh_every=10, swap_delay=2, seed=3),
    )
    trainer.train()
    feedback = trainer.hard_batches
    sampler = feedback.base_sampler
    assert feedback.fed_back == 3 * len(sampler) == trainer.state.global_step and feedback.pending == 0
    assert sampler.bank.seen.all() and sampler.refresh_stats.builds >= 1
    # Row i of the bank holds the model's embedding of item i (the pairing is exact).
    with torch.no_grad():
        fresh = trainer.model.encoder(Points().x).numpy()
    stored = sampler.bank.embeddings
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    nearest = (unit(stored) @ unit(fresh).T).argmax(axis=1)
    assert (nearest == np.arange(N)).mean() > 0.95
    assert any("batchsampler/builds" in entry for entry in trainer.state.log_history)


def test_default_embeddings_and_bad_arguments():
    hidden = torch.ones(2, 3, 4)
    hidden[0, 2] = 7.0
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    pooled = default_embeddings({"last_hidden_state": hidden}, {"attention_mask": mask})
    assert torch.allclose(pooled[0], torch.ones(4)) and pooled.shape == (2, 4)
    with pytest.raises(ValueError, match="embeddings_fn"):
        default_embeddings({"logits": torch.zeros(2, 2)}, {})
    with pytest.raises(TypeError, match="batch_sampler must be"):
        HardBatchesTrainer(model=Contrastive(), batch_sampler=3)


def test_a_resumed_run_pairs_embeddings_with_the_right_batches(tmp_path):
    """The trainer replays and discards the batches it had trained on: none is fed back."""
    os.environ.setdefault("WANDB_DISABLED", "true")

    def trainer(resume):
        args = TrainingArguments(output_dir=str(tmp_path), num_train_epochs=2, per_device_train_batch_size=B,
                                 save_strategy="steps", save_steps=20, report_to=[], use_cpu=True,
                                 remove_unused_columns=False, disable_tqdm=True, seed=3)
        return HardBatchesTrainer(
            model=Contrastive(), args=args, train_dataset=Points(),
            data_collator=lambda items: {"x": torch.stack([item["x"] for item in items])},
            batch_sampler=lambda dataset: BatchSampler(dataset, B, k=5, m=30, seed=3),
        )

    first = trainer(False)
    first.train()
    resumed = trainer(True)
    resumed.train(resume_from_checkpoint=str(tmp_path / "checkpoint-20"))  # epoch 1, batch 5 of 15
    feedback = resumed.hard_batches
    assert resumed.state.global_step == 30
    assert feedback.fed_back == 10 and feedback.pending == 0  # the 5 replayed batches were not recorded
