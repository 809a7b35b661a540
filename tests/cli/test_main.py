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
    assert main(["build-graph", str(tmp_path / "emb.npy"), "-o", str(tmp_path / "g.npz"), "--k", "10"]) == 2
    assert "batchsampler build-graph: error: " in capsys.readouterr().err
    assert main(["sample", str(tmp_path / "missing.npz"), "-o", str(tmp_path / "x.jsonl"), "--batch-size", "2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("batchsampler sample: error: ") and "missing.npz" in err and "Traceback" not in err


def _usage_error(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize("name", ["g.txt", "g", "g.npy", "g.npz.bak", "g.NPZ"])
def test_build_graph_rejects_an_output_numpy_would_rename(tmp_path, capsys, name):
    np.save(tmp_path / "emb.npy", np.ones((10, 3), dtype=np.float32))
    err = _usage_error(["build-graph", str(tmp_path / "emb.npy"), "-o", str(tmp_path / name), "--k", "2", "--m", "5"], capsys)
    assert "must end in .npz" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["emb.npy"]  # nothing written, under any name


def test_build_graph_writes_exactly_the_path_it_reports(tmp_path, capsys):
    np.save(tmp_path / "emb.npy", np.random.default_rng(0).standard_normal((20, 3)).astype(np.float32))
    output = tmp_path / "graph.v2.npz"
    assert main(["build-graph", str(tmp_path / "emb.npy"), "-o", str(output), "--k", "2", "--m", "5"]) == 0
    assert capsys.readouterr().out.startswith(f"wrote {output}:")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["emb.npy", "graph.v2.npz"]  # no temporary left over
    assert ProximityGraph.load(output).num_nodes == 20


def test_sample_rejects_an_output_of_another_kind(tmp_path, capsys):
    assert "must end in .jsonl or .npy" in _usage_error(
        ["sample", str(tmp_path / "g.npz"), "-o", str(tmp_path / "x.txt"), "--batch-size", "2"], capsys
    )


@pytest.fixture
def files(tmp_path):
    embeddings = np.random.default_rng(0).standard_normal((30, 4)).astype(np.float32)
    np.save(tmp_path / "emb.npy", embeddings)
    ProximityGraph.build(embeddings, 3, 10).save(tmp_path / "g.npz")
    (tmp_path / "binary.json").write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe" * 10)
    (tmp_path / "empty.npz").write_bytes(b"")
    np.savez(tmp_path / "other.npz", x=np.arange(3))
    return tmp_path


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["sample", "{d}/emb.npy", "-o", "{d}/b.jsonl", "--batch-size", "4"], "is a .npy array (embeddings?); expected a graph .npz"),
        (["sample", "{d}/empty.npz", "-o", "{d}/b.jsonl", "--batch-size", "4"], "is empty; expected a saved ProximityGraph"),
        (["sample", "{d}/other.npz", "-o", "{d}/b.jsonl", "--batch-size", "4"], "expected a graph written by ProximityGraph.save"),
        (["sample", "{d}/binary.json", "-o", "{d}/b.jsonl", "--batch-size", "4"], "expected a graph .npz"),
        (["build-graph", "{d}/g.npz", "-o", "{d}/h.npz"], "is a .npz archive (a saved graph?); expected a float array"),
        (["build-graph", "{d}/binary.json", "-o", "{d}/h.npz"], "expected a float array [N, d] saved with numpy.save"),
        (["build-graph", "{d}/missing.npy", "-o", "{d}/h.npz"], "no such file"),
        (["report", "{d}/binary.json"], "is a binary file, not text; expected a RUN.json file"),
        (["report", "{d}/emb.npy"], "expected a RUN.json file"),
        (["report", "{d}/missing.json"], "no such file"),
    ],
)
def test_wrong_kind_of_input_file_says_what_was_expected(files, capsys, argv, expected):
    assert main([part.format(d=files) for part in argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"batchsampler {argv[0]}: error: "), err
    assert expected in err
    assert not (files / "b.jsonl").exists() and not (files / "h.npz").exists()


def test_sample_files_are_written_atomically(tmp_path, capsys, monkeypatch):
    import sys

    cli_main = sys.modules["batchsampler.cli.main"]  # the package's ``main`` attribute is the function
    embeddings = np.random.default_rng(0).standard_normal((30, 4)).astype(np.float32)
    ProximityGraph.build(embeddings, 3, 10).save(tmp_path / "g.npz")
    for name in ("b.jsonl", "b.npy"):
        (tmp_path / name).write_text("previous")

    def interrupted(*args, **kwargs):
        raise OSError("disk full")

    # A failure mid-write leaves the previous file and no temporary file.
    monkeypatch.setattr(cli_main.json, "dumps", interrupted)
    monkeypatch.setattr(cli_main.np, "save", interrupted)
    for name in ("b.jsonl", "b.npy"):
        assert main(["sample", str(tmp_path / "g.npz"), "-o", str(tmp_path / name), "--batch-size", "4"]) == 2
        assert "disk full" in capsys.readouterr().err
        assert (tmp_path / name).read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.jsonl", "b.npy", "g.npz"]


def test_build_graph_progress_bars_only_on_a_terminal(tmp_path, capsys):
    np.save(tmp_path / "emb.npy", np.random.default_rng(0).standard_normal((3000, 4)).astype(np.float32))
    assert main(["build-graph", str(tmp_path / "emb.npy"), "-o", str(tmp_path / "g.npz"), "--k", "3", "--m", "10"]) == 0
    assert capsys.readouterr().err == ""  # pytest's stderr is not a terminal
    assert main(["build-graph", str(tmp_path / "emb.npy"), "-o", str(tmp_path / "g.npz"), "--k", "3", "--m", "10",
                 "--no-progress"]) == 0


def test_parser_is_buildable_for_documentation():
    assert {"build-graph", "sample", "demo"} <= set(build_parser()._subparsers._group_actions[0].choices)
