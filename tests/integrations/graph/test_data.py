import numpy as np
import pytest
import torch

from batchsampler.integrations.graph import GraphCLDataset, load_tu_dataset
from batchsampler.integrations.graph.data import MAX_DEGREE_FEATURE


def test_mutag_loads_from_a_read_only_layout(mutag, tu_root):
    assert len(mutag) == 188 and mutag.num_node_features == 7
    assert sorted(np.bincount([int(g.y) for g in mutag]).tolist()) == [63, 125]
    assert not (tu_root / "MUTAG" / "processed").exists()  # the source stays untouched


def test_datasets_without_features_get_degree_features(tu_root, tmp_path):
    imdb = load_tu_dataset("IMDB-BINARY", tu_root, cache_dir=tmp_path)
    graph = imdb[0]
    assert graph.x.shape == (graph.num_nodes, MAX_DEGREE_FEATURE + 1)
    degrees = torch.bincount(graph.edge_index[0], minlength=graph.num_nodes).clamp(max=MAX_DEGREE_FEATURE)
    assert torch.equal(graph.x.argmax(dim=1), degrees)


def _write_tu(root, name, graphs, labels):
    raw = root / name / "raw"
    raw.mkdir(parents=True)
    edges, indicator, offset = [], [], 0
    for number, (num_nodes, pairs) in enumerate(graphs, start=1):
        indicator += [number] * num_nodes
        edges += [(a + offset + 1, b + offset + 1) for a, b in pairs] + [(b + offset + 1, a + offset + 1) for a, b in pairs]
        offset += num_nodes
    (raw / f"{name}_A.txt").write_text("\n".join(f"{a}, {b}" for a, b in edges) + "\n")
    (raw / f"{name}_graph_indicator.txt").write_text("\n".join(map(str, indicator)) + "\n")
    (raw / f"{name}_graph_labels.txt").write_text("\n".join(map(str, labels)) + "\n")


def test_any_tu_dataset_in_the_standard_layout(tmp_path):
    graphs = [(3, [(0, 1), (1, 2)]), (4, [(0, 1), (1, 2), (2, 3), (3, 0)]), (2, [(0, 1)])]
    _write_tu(tmp_path / "src", "TOY", graphs, [1, -1, 1])
    dataset = load_tu_dataset("TOY", tmp_path / "src", cache_dir=tmp_path / "cache")
    assert len(dataset) == 3
    assert [g.num_nodes for g in dataset] == [3, 4, 2]
    assert dataset[1].x.argmax(dim=1).tolist() == [2, 2, 2, 2]  # every node of the square has degree 2


def test_missing_dataset_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="root must contain NOPE/raw/NOPE_A.txt"):
        load_tu_dataset("NOPE", tmp_path)


def test_views_are_reproducible_and_differ(mutag):
    graphs = [mutag[i] for i in range(5)]
    first = GraphCLDataset(graphs, ("node_drop", "edge_perturb"), seed=3)
    second = GraphCLDataset(graphs, ("node_drop", "edge_perturb"), seed=3)
    index, a1, a2 = first[2]
    _, b1, b2 = second[2]
    assert index == 2
    assert torch.equal(a1.x, b1.x) and torch.equal(a2.edge_index, b2.edge_index)
    _, c1, _ = first[2]  # the next draw of the same graph is a new view
    assert not (torch.equal(c1.x, a1.x) and torch.equal(c1.edge_index, a1.edge_index))


def _toy(root, name="TOY", labels=(1, -1, 1)):
    _write_tu(root, name, [(3, [(0, 1), (1, 2)]), (4, [(0, 1), (1, 2), (2, 3), (3, 0)]), (2, [(0, 1)])], list(labels))


def test_default_cache_is_per_user_and_keyed_by_content(tmp_path, monkeypatch):
    from batchsampler.integrations.graph.data import default_cache_dir

    monkeypatch.delenv("BATCHSAMPLER_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "batchsampler" / "tu"
    _toy(tmp_path / "src")
    first = load_tu_dataset("TOY", tmp_path / "src")
    entries = sorted((tmp_path / "xdg" / "batchsampler" / "tu").iterdir())
    assert [entry.name.split("-")[0] for entry in entries] == ["TOY"]  # no staging directory left over
    assert len(load_tu_dataset("TOY", tmp_path / "src")) == len(first) == 3  # reused as is
    # A changed source gets its own entry; the old one is left alone, never deleted.
    (tmp_path / "src" / "TOY" / "raw" / "TOY_graph_labels.txt").write_text("1\n-1\n-1\n")
    changed = load_tu_dataset("TOY", tmp_path / "src")
    assert [int(g.y) for g in changed] == [1, 0, 0] and [int(g.y) for g in first] == [1, 0, 1]
    after = sorted((tmp_path / "xdg" / "batchsampler" / "tu").iterdir())
    assert len(after) == 2 and entries[0] in after


def test_losing_a_race_to_another_process_uses_its_entry(tmp_path, monkeypatch):
    import shutil

    from batchsampler.integrations.graph import data

    _toy(tmp_path / "src")
    cache = tmp_path / "cache"
    real_rename = data.os.rename

    def rival_first(source, target):
        shutil.copytree(source, target)  # another process publishes the same entry first
        (target / "rival").write_text("")
        return real_rename(source, target)  # then ours fails: the target exists and is not empty

    monkeypatch.setattr(data.os, "rename", rival_first)
    dataset = load_tu_dataset("TOY", tmp_path / "src", cache_dir=cache)
    assert len(dataset) == 3
    (entry,) = cache.iterdir()  # the rival's entry, and no staging directory of ours
    assert (entry / "rival").exists()
