"""A plain PyTorch training loop with BatchSampler: update, scheduled background refresh, resume.

    python examples/train_loop.py --epochs 10 --sampler batchsampler
    python examples/train_loop.py --quick                      # a few seconds
    python examples/train_loop.py --checkpoint ckpt/ --stop-after 30   # stop mid-run...
    python examples/train_loop.py --checkpoint ckpt/ --resume          # ...and continue exactly
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import Encoder, IndexedDataset, augment, bank_vectors, knn_accuracy, load_digits  # noqa: E402
from torchdata.stateful_dataloader import StatefulDataLoader  # noqa: E402

from batchsampler import SAMPLERS  # noqa: E402
from batchsampler.losses import get_loss, loss_names  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sampler", choices=sorted(SAMPLERS), default="batchsampler")
    parser.add_argument("--loss", choices=loss_names(), default="ntxent")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--refresh-every", type=int, default=7, help="produced batches between graph rebuilds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--checkpoint", type=Path, help="directory for sampler + model checkpoints")
    parser.add_argument("--stop-after", type=int, help="stop (and checkpoint) after this many steps")
    parser.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    parser.add_argument("--quick", action="store_true", help="2 epochs, for smoke tests")
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs = 2
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    data, labels = load_digits()
    dataset = IndexedDataset(data)
    sampler = SAMPLERS[args.sampler](
        dataset, batch_size=args.batch_size, k=20, m=200, restart_prob=0.2, seed=args.seed,
        refresh_every=args.refresh_every, warmup_epochs=1, background=True, swap_delay=2,
    )
    loader = StatefulDataLoader(dataset, batch_sampler=sampler, num_workers=args.num_workers)
    model = Encoder()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = get_loss(args.loss, temperature=0.5)
    views = torch.Generator().manual_seed(args.seed)
    step, start_epoch = 0, 0
    if args.resume:
        # weights_only: tensors and plain containers only, never arbitrary pickled objects (the
        # default only since torch 2.6; the package supports torch >= 2.1).
        state = torch.load(args.checkpoint / "train.pt", weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        views.set_state(state["views"])
        step, start_epoch = state["step"], state["epoch"]
        sampler.load(args.checkpoint / "sampler.npz")  # bank, graph, the epoch's batches
        loader.load_state_dict(state["loader"])  # the O(1) position, incl. the sampler's

    history = []
    for epoch in range(start_epoch, args.epochs):
        total = 0.0
        for indices, x in loader:
            z1, z2 = model(augment(x, views)), model(augment(x, views))
            loss = loss_fn(z1, z2)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            sampler.update(indices, bank_vectors(z1, z2))  # cheap: copied into the CPU bank
            total += loss.item()
            step += 1
            if args.stop_after is not None and step == args.stop_after:
                save(args.checkpoint, sampler, loader, model, optimizer, views, step, epoch)
                print(f"stopped at step {step}; resume with --resume")
                return {"stopped_at": step, "history": history}
        accuracy = knn_accuracy(model, data, labels)
        history.append({"epoch": epoch, "loss": total / len(loader), "knn_accuracy": accuracy})
        stats = getattr(sampler, "refresh_stats", None)
        print(
            f"epoch {epoch}: loss {total / len(loader):.4f}  kNN accuracy {accuracy:.3f}"
            + (f"  graph v{sampler.graph_version} (stall {stats.stall_seconds:.2f}s)" if stats else "")
        )
    if hasattr(sampler, "close"):
        sampler.close()
    return {"history": history, "final_knn_accuracy": history[-1]["knn_accuracy"] if history else None}


def save(directory, sampler, loader, model, optimizer, views, step, epoch) -> None:
    """Both checkpoint files, each written atomically (``sampler.save`` is; ``train.pt`` goes to
    a temporary name first and is renamed over the old one), so a crash mid-save keeps the
    previous file whole."""
    os.makedirs(directory, exist_ok=True)
    sampler.save(directory / "sampler.npz")
    target = Path(directory) / "train.pt"
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as handle:
            torch.save(
                {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "views": views.get_state(),
                 "loader": loader.state_dict(), "step": step, "epoch": epoch},
                handle,
            )
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    finally:
        if temporary.exists():
            temporary.unlink()


if __name__ == "__main__":
    main()
