"""BatchSampler under Hugging Face accelerate (``Accelerator.prepare``).

    python examples/train_accelerate.py --quick
    accelerate launch --num_processes 2 examples/train_accelerate.py

With several processes accelerate shards the batch sampler itself. Build the sampler with
``distributed=False`` and the *global* batch size, and let accelerate split every batch across
processes (``split_batches=True``), so that the global batch stays one hard-to-distinguish set.
accelerate never calls ``set_epoch`` on a batch sampler: the sampler advances its epoch on every
``iter``. ``update`` is then given embeddings gathered from all processes (``accelerator.gather``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).parent))
from common import Encoder, IndexedDataset, augment, bank_vectors, knn_accuracy, load_digits  # noqa: E402

from batchsampler import BatchSampler  # noqa: E402
from batchsampler.losses import NTXentLoss  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--global-batch-size", type=int, default=128)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    epochs = 2 if args.quick else args.epochs

    accelerator = Accelerator(cpu=not torch.cuda.is_available(),
                              dataloader_config=DataLoaderConfiguration(split_batches=True))
    data, labels = load_digits()
    dataset = IndexedDataset(data)
    sampler = BatchSampler(dataset, batch_size=args.global_batch_size, k=20, m=200, seed=0,
                           refresh_every=5, swap_delay=2, distributed=False)
    model = Encoder()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(dataset, batch_sampler=sampler)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    loss_fn = NTXentLoss(temperature=0.5)
    views = torch.Generator().manual_seed(accelerator.process_index)
    history = []
    for epoch in range(epochs):
        for indices, x in loader:
            z1 = model(augment(x.cpu(), views).to(x.device))
            z2 = model(augment(x.cpu(), views).to(x.device))
            loss = loss_fn(z1, z2)
            optimizer.zero_grad()
            accelerator.backward(loss)
            optimizer.step()
            # Every process feeds the whole global batch back, so all banks stay identical.
            sampler.update(accelerator.gather(indices), accelerator.gather(bank_vectors(z1, z2)))
        accuracy = knn_accuracy(accelerator.unwrap_model(model).cpu(), data, labels)
        history.append({"epoch": epoch, "knn_accuracy": accuracy, "graph_version": sampler.graph_version})
        accelerator.print(f"epoch {epoch}: loss {loss.item():.4f}  kNN accuracy {accuracy:.3f}  graph v{sampler.graph_version}")
    sampler.close()
    return {"history": history, "epochs_seen": sampler.epoch}


if __name__ == "__main__":
    main()
