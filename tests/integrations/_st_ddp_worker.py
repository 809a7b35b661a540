"""One rank of a 2-process (gloo, CPU) SentenceTransformerTrainer run with HardBatches.

Run by tests/integrations/test_sentence_transformers.py as
``python _st_ddp_worker.py MODEL_DIR OUT_DIR`` with torchrun's environment variables set
(RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT); writes ``OUT_DIR/rank{RANK}.json``.
"""

import hashlib
import json
import os
import sys

import numpy as np
import torch
from datasets import Dataset
from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments
from sentence_transformers import losses as st_losses
from sentence_transformers import models

from batchsampler.integrations.sentence_transformers import HardBatches

WORDS = "a man woman child dog cat plays runs eats sings guitar ball food song park house street red blue big".split()


def main(model_dir: str, out_dir: str) -> None:
    rank = int(os.environ["RANK"])
    rng = np.random.default_rng(0)
    n = 90  # 90 rows, global batch 2 x 8 = 16: the last global batch is padded
    anchors = [" ".join(rng.choice(WORDS, 5)) + f" {i}" for i in range(n)]
    dataset = Dataset.from_dict({"anchor": anchors, "positive": [a.replace(" ", " the ", 1) for a in anchors]})
    torch.manual_seed(0)
    model = SentenceTransformer(modules=[models.Transformer(model_dir, max_seq_length=16), models.Pooling(32)], device="cpu")
    hard = HardBatches(refresh_every=2, swap_delay=1, lockstep_batches=1)
    args = SentenceTransformerTrainingArguments(
        output_dir=os.path.join(out_dir, "out"), num_train_epochs=2, per_device_train_batch_size=8,
        batch_sampler=hard, save_strategy="no", report_to=[], use_cpu=True, ddp_backend="gloo", seed=5,
        learning_rate=1e-3, disable_tqdm=True, logging_steps=2,
    )
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=dataset,
                                         loss=st_losses.MultipleNegativesRankingLoss(model))
    hard.attach(trainer)
    consumed = []
    original = None

    def record(embeddings):
        indices = original(embeddings)
        consumed.append(indices)
        return indices

    def on_train_begin_spy(*a, **k):
        nonlocal original
        original = hard.feedback.update
        hard.feedback.update = record

    callback = trainer.callback_handler.callbacks[0]
    begin = callback.on_train_begin

    def wrapped(*a, **k):
        begin(*a, **k)
        on_train_begin_spy()

    callback.on_train_begin = wrapped
    trainer.train()
    sampler = hard.feedback.base_sampler
    result = {
        "consumed": consumed,
        "batches_per_epoch": len(trainer.get_train_dataloader()),
        "sampler_len": len(sampler),
        "builds": sampler.refresh_stats.builds,
        "graph": hashlib.sha256(sampler.graph.indices.tobytes()).hexdigest() if sampler.graph is not None else None,
        "bank": hashlib.sha256(sampler.bank.embeddings.tobytes()).hexdigest(),
        "seen": int(sampler.bank.seen.sum()),
        "world_size": sampler.dist.world_size,
    }
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as handle:
        json.dump(result, handle)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
