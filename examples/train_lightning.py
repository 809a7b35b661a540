"""BatchSampler under PyTorch Lightning.

    python examples/train_lightning.py --quick

Lightning calls ``set_epoch`` on ``loader.batch_sampler.sampler``: the sampler's ``.sampler``
child forwards it. Under DDP, pass ``use_distributed_sampler=False`` to the Trainer (otherwise
Lightning re-instantiates custom batch samplers); the sampler then shards itself over
torch.distributed (every rank yields its slice of the same global batch) and ``update``
all-gathers embeddings.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).parent))
from common import Encoder, IndexedDataset, augment, bank_vectors, knn_accuracy, load_digits  # noqa: E402

from batchsampler import BatchSampler  # noqa: E402
from batchsampler.losses import NTXentLoss  # noqa: E402


class SimCLRModule(L.LightningModule):
    def __init__(self, sampler: BatchSampler) -> None:
        super().__init__()
        self.encoder = Encoder()
        self.loss_fn = NTXentLoss(temperature=0.5)
        self.sampler = sampler
        self.views = torch.Generator().manual_seed(0)
        self.epochs_started: list[int] = []

    def on_train_epoch_start(self) -> None:
        self.epochs_started.append(self.sampler.epoch)  # set by Lightning through sampler.sampler

    def training_step(self, batch, batch_idx):
        indices, x = batch
        z1, z2 = self.encoder(augment(x, self.views)), self.encoder(augment(x, self.views))
        loss = self.loss_fn(z1, z2)
        self.sampler.update(indices, bank_vectors(z1, z2))
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-3)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    epochs = 2 if args.quick else args.epochs
    data, labels = load_digits()
    dataset = IndexedDataset(data)
    sampler = BatchSampler(dataset, batch_size=128, k=20, m=200, seed=0, refresh_every=5, swap_delay=2)
    module = SimCLRModule(sampler)
    trainer = L.Trainer(
        max_epochs=epochs, accelerator="cpu", devices=1, use_distributed_sampler=False, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )
    trainer.fit(module, DataLoader(dataset, batch_sampler=sampler))
    accuracy = knn_accuracy(module.encoder, data, labels)
    print(f"after {epochs} epochs: kNN accuracy {accuracy:.3f}, graph v{sampler.graph_version}")
    sampler.close()
    return {"epochs_started": module.epochs_started, "knn_accuracy": accuracy, "graph_version": sampler.graph_version}


if __name__ == "__main__":
    main()
