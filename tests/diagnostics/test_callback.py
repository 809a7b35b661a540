import json

import numpy as np
import pytest

from batchsampler import BatchSampler, UniformBatchSampler
from batchsampler.diagnostics import (
    RUN_FORMAT,
    SamplerMonitor,
    load_runs,
    merge_runs,
    summarize_epoch,
    summarize_graph,
    write_runs,
)


def _epoch(monitor, sampler, step_seconds=0.01):
    batches = []
    for batch in sampler:
        batches.append(batch)
        monitor.on_batch(np.asarray(batch), step_seconds=step_seconds)
    return batches


def test_records_match_the_direct_statistics(clustered):
    embeddings, labels = clustered
    sampler = BatchSampler(len(embeddings), 32, k=5, m=60, seed=0, embeddings=embeddings)
    monitor = SamplerMonitor(sampler, labels=labels, embeddings=embeddings)
    assert monitor.name == "batchsampler"
    batches = _epoch(monitor, sampler)
    record = monitor.on_epoch_end(metrics={"knn_accuracy": np.float32(0.5)})
    direct = summarize_epoch(batches, len(embeddings), embeddings=embeddings, labels=labels)
    assert record["epoch"] == 0 and record["steps"] == len(sampler) == 8
    assert (record["coverage"], record["repeats"], record["num_indices"]) == (1.0, 0, 240)
    assert record["hardness"]["mean"] == pytest.approx(direct.mean_similarity)
    assert record["hardness"]["q90"] == pytest.approx(direct.similarity_q90)
    assert record["hardness_source"] == "embeddings"
    assert record["same_label_share"] == pytest.approx(direct.same_label_share)
    assert record["walk"]["steps"] == sampler.walk_stats.steps > 0
    assert record["graph"] == summarize_graph(sampler.graph, labels).as_dict()
    assert record["graph_version"] == 1
    assert record["timing"]["step_seconds"] == pytest.approx(0.08) and record["timing"]["timed_steps"] == 8
    assert record["timing"]["sampler_share"] == pytest.approx(record["timing"]["sampler_seconds"] / 0.08)
    assert record["metrics"] == {"knn_accuracy": 0.5}
    assert record["staleness"]["seen_share"] == 1.0
    _epoch(monitor, sampler)
    assert monitor.on_epoch_end()["epoch"] == 1  # numbered on from the previous record


def test_bank_embeddings_leave_unseen_rows_out(clustered):
    embeddings, labels = clustered
    sampler = UniformBatchSampler(len(embeddings), 40, seed=0)
    monitor = SamplerMonitor(sampler, labels=labels)
    batches = _epoch(monitor, sampler)
    record = monitor.on_epoch_end()
    assert record["hardness"] is None and record["hardness_source"] == "bank" and record["staleness"] is None
    assert record["graph"] is None and record["timing"]["builds"] == 0
    seen = np.arange(0, 240, 3)
    sampler.update(seen, embeddings[seen])
    batches = _epoch(monitor, sampler)
    record = monitor.on_epoch_end()
    valid = np.zeros(240, dtype=bool)
    valid[seen] = True
    direct = summarize_epoch(batches, 240, embeddings=sampler.bank.embeddings, valid=valid)
    assert record["hardness"]["mean"] == pytest.approx(direct.mean_similarity)
    assert record["staleness"]["seen_share"] == pytest.approx(1 / 3)


def test_embeddings_fn_is_called_once_per_epoch(clustered):
    embeddings, _ = clustered
    calls = []

    def encode():
        calls.append(1)
        return embeddings * 2.0

    sampler = UniformBatchSampler(len(embeddings), 40, seed=0)
    monitor = SamplerMonitor(sampler, embeddings_fn=encode, name="mine")
    batches = _epoch(monitor, sampler)
    record = monitor.on_epoch_end(3)
    assert calls == [1] and record["epoch"] == 3 and record["hardness_source"] == "embeddings_fn"
    assert record["hardness"]["mean"] == pytest.approx(summarize_epoch(batches, 240, embeddings=embeddings).mean_similarity)
    assert record["same_label_share"] is None


def test_steps_are_timed_between_calls():
    sampler = UniformBatchSampler(240, 40, seed=0)
    monitor = SamplerMonitor(sampler)
    for batch in sampler:
        monitor.on_batch(batch)
    assert monitor.on_epoch_end()["timing"]["timed_steps"] == 5  # the first step has no start mark
    monitor.on_epoch_start()
    for batch in sampler:
        monitor.on_batch(batch)
    timing = monitor.on_epoch_end()["timing"]
    assert timing["timed_steps"] == 6 and timing["step_seconds"] > 0


def test_json_round_trip_and_merge(tmp_path, clustered):
    embeddings, labels = clustered
    path = tmp_path / "out" / "RUN.json"
    documents = []
    for name in ("uniform", "batchsampler"):
        sampler = (UniformBatchSampler if name == "uniform" else BatchSampler)(240, 40, k=5, m=60, seed=0, embeddings=embeddings)
        monitor = SamplerMonitor(sampler, labels=labels)
        for _ in range(2):
            _epoch(monitor, sampler)
            monitor.on_epoch_end(metrics={"accuracy": 0.5, "undefined": float("nan")})
        assert monitor.to_json(path, meta={"note": name}) == path
        documents.append(monitor.to_dict())
    loaded = load_runs(path)
    assert loaded["format"] == RUN_FORMAT
    assert set(loaded["runs"]) == {"uniform", "batchsampler"}
    assert loaded["runs"]["batchsampler"] == json.loads(json.dumps(documents[1]["runs"]["batchsampler"]))
    assert loaded["runs"]["batchsampler"][1]["metrics"] == {"accuracy": 0.5, "undefined": None}
    assert loaded["meta"]["samplers"]["batchsampler"]["k"] == 5
    assert loaded["meta"]["samplers"]["uniform"]["class"] == "UniformBatchSampler"
    assert loaded["meta"]["note"] == "batchsampler"  # the later writer's meta wins
    assert "NaN" not in path.read_text()
    # Without merge the file holds this run only; a later run of the same name replaces it.
    merged = merge_runs(documents[0], documents[1], {"format": RUN_FORMAT, "runs": {"uniform": []}})
    assert merged["runs"]["uniform"] == [] and len(merged["runs"]["batchsampler"]) == 2
    write_runs(path, documents[0])
    assert set(load_runs(path)["runs"]) == {"uniform"}


def test_bad_input_raises(tmp_path, clustered):
    embeddings, labels = clustered
    sampler = UniformBatchSampler(240, 40, seed=0)
    with pytest.raises(TypeError, match="sampler"):
        SamplerMonitor(list(range(10)))
    with pytest.raises(ValueError, match="embeddings_fn"):
        SamplerMonitor(sampler, embeddings=embeddings, embeddings_fn=lambda: embeddings)
    with pytest.raises(TypeError, match="embeddings_fn"):
        SamplerMonitor(sampler, embeddings_fn=embeddings)
    with pytest.raises(ValueError, match="labels"):
        SamplerMonitor(sampler, labels=labels[:10])
    monitor = SamplerMonitor(sampler, embeddings_fn=lambda: embeddings[:10])
    with pytest.raises(ValueError, match="indices"):
        monitor.on_batch([0, 240])
    with pytest.raises(TypeError, match="indices"):
        monitor.on_batch([0.5])
    with pytest.raises(ValueError, match="step_seconds"):
        monitor.on_batch([0], step_seconds=-1.0)
    with pytest.raises(TypeError, match="metrics"):
        monitor.on_epoch_end(metrics={"accuracy": "high"})
    with pytest.raises(ValueError, match="epoch"):
        monitor.on_epoch_end(-1)
    with pytest.raises(ValueError, match=r"embeddings_fn\(\)"):
        monitor.on_epoch_end()
    (tmp_path / "other.json").write_text(json.dumps({"runs": {}}))
    with pytest.raises(ValueError, match="RUN.json"):
        load_runs(tmp_path / "other.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ValueError, match="not JSON"):
        load_runs(tmp_path / "broken.json")
    with pytest.raises(ValueError, match="runs"):
        merge_runs({"format": RUN_FORMAT, "runs": {"a": 1}})
    with pytest.raises(ValueError, match="documents"):
        merge_runs()


def test_records_relative_hardness_and_the_graph_setting(clustered):
    embeddings, labels = clustered
    sampler = BatchSampler(len(embeddings), 32, k=5, m=60, seed=0, embeddings=embeddings, target_hardness=0.5)
    monitor = SamplerMonitor(sampler, labels=labels, embeddings=embeddings)
    _epoch(monitor, sampler)
    record = monitor.on_epoch_end()
    hardness = record["hardness"]
    span = hardness["knn_reference"] - hardness["uniform_reference"]
    assert span > 0
    assert hardness["relative"] == pytest.approx((hardness["mean"] - hardness["uniform_reference"]) / span, abs=1e-3)
    assert len(hardness["relative_by_quarter"]) == 4
    assert (record["graph_k"], record["graph_m"]) == (sampler.refresh_stats.k, sampler.refresh_stats.m)
    assert record["target_hardness"] == 0.5 and record["hardness_aim"] == 0.5
    # As walked on the sampler's bank, which here is the monitor's embeddings: the same epoch.
    assert record["planned_hardness"] == pytest.approx(hardness["relative"], abs=0.05)
    assert monitor.config()["target_hardness"] == 0.5 and monitor.config()["drift_epochs"] == 0
    assert monitor.config()["candidate_walks"] == sampler.candidate_walks > 1
    assert monitor.config()["max_candidate_walks"] == sampler.max_candidate_walks == 8 * sampler.candidate_walks
    uniform = UniformBatchSampler(len(embeddings), 32, seed=0)
    plain = SamplerMonitor(uniform, embeddings=embeddings)
    _epoch(plain, uniform)
    record = plain.on_epoch_end()
    assert abs(record["hardness"]["relative"]) < 0.1 and record["graph_k"] is None
    assert record["planned_hardness"] is None and record["hardness_aim"] is None
