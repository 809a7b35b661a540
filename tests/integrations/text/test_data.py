import numpy as np
import pytest

from batchsampler.integrations.text.data import (
    IndexedSentences,
    STSPairs,
    load_senteval_sts,
    load_sick,
    load_sts_sets,
    load_stsb,
    read_sentences,
    sample_sentences,
)


def test_load_sts_sets_finds_every_layout_with_pair_counts(tiny_data):
    root, expected = tiny_data
    sets = load_sts_sets(root)
    assert {name: len(pairs) for name, pairs in sets.items()} == expected


def test_senteval_skips_empty_gold_scores_and_keeps_alignment(tiny_data):
    root, _ = tiny_data
    pairs = load_senteval_sts(root / "STS12-en-test")
    assert pairs.name == "STS12"
    assert pairs.subsets == {"MSRvid": 5, "OnWN": 4}  # ALL has no input file: ignored
    assert pairs.scores.tolist() == [5.0, 0.5, 3.2, 1.0, 4.4, 2.0, 3.5, 1.25, 0.0]
    lines = (root / "STS12-en-test" / "STS.input.OnWN.txt").read_text().splitlines()
    # The third OnWN line (gold 3.5) is the 7th pair: the skipped second line shifts nothing else.
    assert pairs.sentences1[6] == lines[2].split("\t")[0]
    assert pairs.sentences2[8] == lines[5].split("\t")[1]


def test_senteval_rejects_mismatched_line_counts(tmp_path):
    (tmp_path / "STS.input.x.txt").write_text("a\tb\nc\td\n")
    (tmp_path / "STS.gs.x.txt").write_text("1\n2\n3\n")
    with pytest.raises(ValueError, match="lines"):
        load_senteval_sts(tmp_path)
    with pytest.raises(FileNotFoundError):
        load_senteval_sts(tmp_path / "missing")


def test_stsb_reads_extra_columns_and_skips_empty_scores(tiny_data):
    root, _ = tiny_data
    sets = load_stsb(root / "STSBenchmark")
    assert sorted(sets) == ["STS-B dev", "STS-B test"]
    test = sets["STS-B test"]
    assert len(test) == 29 and not any(s.endswith("source") for s in test.sentences2)
    with pytest.raises(ValueError, match="splits"):
        load_stsb(root / "STSBenchmark", ("validation",))


def test_sick_needs_its_header(tiny_data, tmp_path):
    root, _ = tiny_data
    pairs = load_sick(root / "SICK" / "SICK_test_annotated.txt")
    assert pairs.name == "SICK-R test" and len(pairs) == 12 and 1 <= pairs.scores.min() <= pairs.scores.max() <= 5
    bad = tmp_path / "SICK_x.txt"
    bad.write_text("id\ta\tb\tscore\n1\tx\ty\t3\n")
    with pytest.raises(ValueError, match="relatedness_score"):
        load_sick(bad)


def test_corpus_reader_decompresses_and_skips_blank_lines(tiny_data):
    root, _ = tiny_data
    sentences = read_sentences(root / "corpus.txt.xz")
    assert len(sentences) == 200 and all(s and s == s.strip() for s in sentences)
    assert read_sentences(root / "corpus.txt.xz", limit=7) == sentences[:7]
    with pytest.raises(ValueError, match="limit"):
        read_sentences(root / "corpus.txt.xz", limit=0)


def test_sample_sentences_is_seeded_and_ordered(tiny_data):
    sentences = [f"s{i}" for i in range(100)]
    a, b = sample_sentences(sentences, 10, seed=3), sample_sentences(sentences, 10, seed=3)
    assert a == b and a != sample_sentences(sentences, 10, seed=4)
    assert [sentences.index(s) for s in a] == sorted(sentences.index(s) for s in a)
    with pytest.raises(ValueError, match="n must be"):
        sample_sentences(sentences, 101)


def test_pairs_validate_and_subsample():
    with pytest.raises(ValueError, match="same length"):
        STSPairs("x", ["a"], ["b", "c"], [1.0])
    pairs = STSPairs("x", [f"a{i}" for i in range(10)], [f"b{i}" for i in range(10)], np.arange(10.0))
    small = pairs.subsample(4, seed=1)
    assert len(small) == 4 and all(small.sentences1[i][1:] == small.sentences2[i][1:] for i in range(4))
    assert pairs.subsample(50) is pairs


def test_indexed_sentences_collate():
    dataset = IndexedSentences(["x", "y", "z"])
    assert IndexedSentences.collate([dataset[2], dataset[0]]) == ([2, 0], ["z", "x"])


def test_shared_format_samples_pair_counts(shared_sts):
    sets = load_sts_sets(shared_sts / "format-samples", shared_sts / "STSBenchmark")
    counts = {name: len(pairs) for name, pairs in sets.items()}
    # Samples hold the first 20 lines of each file; STS15/16 leave many gold scores empty.
    assert counts["STS12"] == 100 and counts["STS15"] == 42 and counts["STS16"] == 15
    assert counts["STS-B dev"] == 1500 and counts["STS-B test"] == 1379 and counts["STS-B train"] == 5749
    assert counts["SICK-R test"] == 20
