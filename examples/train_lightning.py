"""BatchSampler under PyTorch Lightning, on one process or several (DDP).

    python examples/train_lightning.py --quick                # 1 process on the CPU, seconds
    python examples/train_lightning.py --quick --devices 2    # 2 gloo processes on the CPU

The recipe:

1. ``Trainer(use_distributed_sampler=False)``. Lightning's default (``True``) re-instantiates
   custom batch samplers around a ``DistributedSampler``; the sampler refuses that with a
   ``ValueError`` naming this argument. It shards itself over torch.distributed: every rank
   yields its slice of the same global batch of ``batch_size * world_size`` indices.
2. Build the sampler in ``train_dataloader()`` (or a DataModule's), where Lightning has already
   initialised torch.distributed, never before ``Trainer.fit``: its constructor compares the
   settings across ranks (a collective). ``distributed`` is detected.
3. In ``training_step``, compute the loss over the global batch (``self.all_gather(z,
   sync_grads=True)``) and call ``sampler.update(indices, embeddings)`` at every step on every
   rank: it is a collective that all-gathers the rows, so all banks and graphs stay identical.
4. Refresh the graph on a schedule (``refresh_every`` produced batches after ``warmup_epochs``,
   built in the background) or at the end of every epoch with :class:`RefreshAtEpochEnd`
   (``--refresh epoch-end``): a blocking ``refresh()`` is a collective too, so it runs on every
   rank, which Lightning's ``on_train_epoch_end`` does.

Lightning calls ``set_epoch`` on ``loader.batch_sampler.sampler``: the sampler's ``.sampler``
child forwards it. FAISS (``backend="exact"/"hnsw"/"ivf"``) runs in the main process of each
rank only, as the batch sampler always does; DataLoader workers (``--num-workers``) only load data.

``--report-dir DIR`` makes every rank write ``DIR/rank{r}.json``: the indices it trained on per
epoch, the graph version at each epoch end and hashes of its bank and graph
(``tests/examples/test_lightning_recipe.py`` checks them).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
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
    """SimCLR on digits; the batch sampler is built in ``train_dataloader`` on every rank."""

    def __init__(self, dataset, *, batch_size: int, refresh_every: int | None, num_workers: int = 0,
                 report_dir: str | None = None) -> None:
        super().__init__()
        self.encoder = Encoder()
        self.loss_fn = NTXentLoss(temperature=0.5)
        self.dataset = dataset
        self.batch_size = batch_size  # per rank
        self.refresh_every = refresh_every
        self.num_workers = num_workers
        self.report_dir = report_dir
        self.sampler: BatchSampler | None = None
        self.report: dict = {"epochs_started": [], "batches": [], "indices": [], "graph_versions": []}

    def train_dataloader(self) -> DataLoader:
        if self.sampler is None:  # once: the bank and graph live across epochs
            # torch.distributed is initialised here under DDP: the sampler shards itself.
            self.sampler = BatchSampler(
                self.dataset, batch_size=self.batch_size, k=20, m=200, seed=0,
                refresh_every=self.refresh_every, warmup_epochs=1, swap_delay=2,
            )
            self.views = torch.Generator().manual_seed(self.global_rank)
        return DataLoader(self.dataset, batch_sampler=self.sampler, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0)

    def on_train_epoch_start(self) -> None:
        self.report["epochs_started"].append(self.sampler.epoch)  # set by Lightning via sampler.sampler
        self.report["batches"].append(0)
        self.report["indices"].append([])

    def training_step(self, batch, batch_idx):
        indices, x = batch
        z1, z2 = self.encoder(augment(x, self.views)), self.encoder(augment(x, self.views))
        # A collective: every rank, every step, with its own rows; every bank gets all of them.
        self.sampler.update(indices, bank_vectors(z1, z2))
        if self.trainer.world_size > 1:
            # The global batch is the hard-negative set: gather it, with gradients. Every rank has
            # the same batch size (a last uneven global batch is padded), as all_gather needs.
            z1, z2 = (self.all_gather(z, sync_grads=True).flatten(0, 1) for z in (z1, z2))
        loss = self.loss_fn(z1, z2)
        self.report["batches"][-1] += 1
        self.report["indices"][-1].extend(indices.tolist())
        self.log("loss", loss, prog_bar=True)
        return loss

    def on_train_epoch_end(self) -> None:
        # Callbacks' on_train_epoch_end (RefreshAtEpochEnd) run before this module hook.
        self.report["graph_versions"].append(self.sampler.graph_version)

    def on_train_end(self) -> None:
        self.sampler.close()
        sampler = self.sampler
        self.report.update(
            rank=self.global_rank, world_size=self.trainer.world_size, len=len(sampler),
            num_instances=sampler.num_instances, global_batch_size=sampler.global_batch_size,
            builds=sampler.refresh_stats.builds,
            bank_sha1=hashlib.sha1(sampler.bank.numpy().tobytes()).hexdigest(),
            graph_sha1=None if sampler.graph is None else hashlib.sha1(sampler.graph.indices.tobytes()).hexdigest(),
        )
        if self.report_dir is not None:
            path = Path(self.report_dir) / f"rank{self.global_rank}.json"
            path.write_text(json.dumps(self.report))

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-3)


class RefreshAtEpochEnd(L.Callback):
    """Rebuild the graph from the bank after every training epoch (blocking; every rank runs it)."""

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        trainer.train_dataloader.batch_sampler.refresh()


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="2 epochs")
    parser.add_argument("--devices", type=int, default=1, help="processes (CPU: gloo)")
    parser.add_argument("--strategy", choices=["ddp", "ddp_spawn"], default="ddp",
                        help="with --devices > 1 (ddp relaunches this script for the other ranks)")
    parser.add_argument("--batch-size", type=int, default=None, help="per rank (default 128 / devices)")
    parser.add_argument("--refresh", choices=["schedule", "epoch-end"], default="schedule",
                        help="refresh_every=5 in the background after a warm-up epoch, or a blocking "
                             "refresh at every epoch end")
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--report-dir", default=None, help="every rank writes rank{r}.json here")
    parser.add_argument("--use-distributed-sampler", action="store_true",
                        help="Lightning's default, to see it refused (ValueError) under DDP")
    args = parser.parse_args(argv)
    epochs = 2 if args.quick else args.epochs
    batch_size = args.batch_size or 128 // args.devices

    L.seed_everything(0, verbose=False)
    data, labels = load_digits()
    dataset = IndexedDataset(data)
    module = SimCLRModule(dataset, batch_size=batch_size, refresh_every=5 if args.refresh == "schedule" else None,
                          num_workers=args.num_workers, report_dir=args.report_dir)
    strategy = "auto"
    if args.devices > 1:
        # A collective that never pairs up fails after this long instead of hanging.
        strategy = L.pytorch.strategies.DDPStrategy(
            start_method="spawn" if args.strategy == "ddp_spawn" else "popen",
            timeout=datetime.timedelta(seconds=120),
        )
    trainer = L.Trainer(
        max_epochs=epochs, accelerator="cpu", devices=args.devices, strategy=strategy,
        use_distributed_sampler=args.use_distributed_sampler,
        callbacks=[RefreshAtEpochEnd()] if args.refresh == "epoch-end" else [],
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )
    trainer.fit(module)
    if not trainer.is_global_zero:
        return {}
    # Under ddp_spawn this is the launching process: the weights came back, the sampler did not.
    accuracy = knn_accuracy(module.encoder, data, labels)
    graph = f", graph v{module.sampler.graph_version}" if module.sampler is not None else ""
    print(f"after {epochs} epochs on {args.devices} process(es): kNN accuracy {accuracy:.3f}{graph}")
    return {**module.report, "knn_accuracy": accuracy}

if __name__ == "__main__":
    main()
