import json

import numpy as np
import pytest

from batchsampler import BatchSampler, ProximityGraph
from batchsampler.cli import build_parser, main


@pytest.mark.parametrize("command", [[], ["build-graph"], ["sample"], ["demo"]])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: batchsampler" in capsys.readouterr().out


def test_no_command_prints_help_and_fails(capsys):
    assert main([]) == 2
    assert "build-graph" in capsys.readouterr().out


def test_build_graph_then_sample_jsonl_and_npy(tmp_path, capsys):
    embeddings = np.random.default_rng(0).standard_normal((103, 6)).astype(np.float32)
    np.save(tmp_path / "emb.npy", embeddings)
    assert main(["build-graph", str(tmp_path / "emb.npy"), "-o", str(tmp_path / "g.npz"), "--k", "5", "--m", "20", "--seed", "1"]) == 0
    assert "103 nodes, 515 edges" in capsys.readouterr().out
    graph = ProximityGraph.load(tmp_path / "g.npz")
    np.testing.assert_array_equal(graph.neighbors, ProximityGraph.build(embeddings, 5, 20, seed=1).neighbors)

    args = ["sample", str(tmp_path / "g.npz"), "--batch-size", "10", "--epochs", "2", "--seed", "3"]
    assert main([*args, "-o", str(tmp_path / "b.jsonl")]) == 0
    records = [json.loads(line) for line in (tmp_path / "b.jsonl").read_text().splitlines()]
    assert len(records) == 22 and {r["epoch"] for r in records} == {0, 1}
    epoch0 = [r["indices"] for r in records if r["epoch"] == 0]
    assert sorted(i for batch in epoch0 for i in batch) == list(range(103))
    # The command line gives exactly the batches of the Python API.
    sampler = BatchSampler.from_graph(graph, 10, seed=3)
    assert epoch0 == list(sampler)

    assert main([*args, "-o", str(tmp_path / "b.npy")]) == 0
    array = np.load(tmp_path / "b.npy")
    assert array.shape == (22, 10)
    assert (array[10, 3:] == -1).all() and (array[10, :3] >= 0).all()
    assert array[:11][array[:11] >= 0].tolist() == [i for batch in epoch0 for i in batch]


def test_errors_are_reported_not_raised(tmp_path, capsys):
    np.save(tmp_path / "emb.npy", np.ones((10, 3)))
    assert main(["build-graph", str(tmp_path / "emb.npy"), "-o", str(tmp_path / "g.npz"), "--k", "10"]) == 1
    assert "k must be <" in capsys.readouterr().err
    assert main(["sample", str(tmp_path / "missing.npz"), "-o", str(tmp_path / "x.txt"), "--batch-size", "2"]) == 1
    assert "--output must end in .jsonl or .npy" in capsys.readouterr().err


def test_parser_is_buildable_for_documentation():
    assert {"build-graph", "sample", "demo"} <= set(build_parser()._subparsers._group_actions[0].choices)
