"""Sentence corpora for unsupervised SimCSE and the STS evaluation sets, from local files.

STS layouts read (any directory the user names; nothing is downloaded):

* SentEval STS12-STS16: a directory ``STS1x-en-test/`` (the year is taken from the name) with
  ``STS.input.<subset>.txt`` (two tab-separated sentences per line) and
  ``STS.gs.<subset>.txt`` (one gold score per line; an empty line means "no score", and the
  pair is skipped as SentEval does). A gold file without an input file (STS12's
  ``STS.gs.ALL.txt``) is ignored.
* STS Benchmark: ``sts-train.csv``, ``sts-dev.csv``, ``sts-test.csv``, tab-separated
  ``genre, file, year, id, score, sentence1, sentence2[, extra columns]``.
* SICK-R: ``SICK_*.txt``, tab-separated with a header row naming ``sentence_A``,
  ``sentence_B`` and ``relatedness_score``.
"""

from __future__ import annotations

import gzip
import logging
import lzma
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

__all__ = [
    "IndexedSentences",
    "STSPairs",
    "load_senteval_sts",
    "load_sick",
    "load_sts_sets",
    "load_stsb",
    "read_sentences",
    "sample_sentences",
]

logger = logging.getLogger(__name__)

STSB_SPLITS = ("train", "dev", "test")


@dataclass
class STSPairs:
    """Sentence pairs with gold similarity scores (one STS evaluation set).

    Attributes:
        name: e.g. ``"STS12"``, ``"STS-B test"``, ``"SICK-R test"``.
        sentences1, sentences2: ``[n]`` sentences, pair ``i`` is ``(sentences1[i], sentences2[i])``.
        scores: ``[n]`` float gold scores.
        subsets: pairs per subset (SentEval topics), in file order; ``{name: n}`` otherwise.
    """

    name: str
    sentences1: list[str]
    sentences2: list[str]
    scores: np.ndarray
    subsets: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.scores = np.asarray(self.scores, dtype=np.float64)
        if not len(self.sentences1) == len(self.sentences2) == len(self.scores):
            raise ValueError(
                f"sentences1, sentences2 and scores must have the same length, got "
                f"{len(self.sentences1)}, {len(self.sentences2)}, {len(self.scores)}"
            )

    def __len__(self) -> int:
        return len(self.scores)

    def subsample(self, max_pairs: int, seed: int = 0) -> STSPairs:
        """A seeded random ``max_pairs`` of the pairs (all of them if there are fewer), in order."""
        if max_pairs < 2:
            raise ValueError(f"max_pairs must be >= 2, got {max_pairs}")
        if len(self) <= max_pairs:
            return self
        keep = np.sort(np.random.default_rng(seed).choice(len(self), max_pairs, replace=False))
        return STSPairs(
            self.name, [self.sentences1[i] for i in keep], [self.sentences2[i] for i in keep],
            self.scores[keep], {f"{self.name} (subsample)": max_pairs},
        )


# ---------------------------------------------------------------------- training corpus


def _open_text(path: Path):
    """Open plain, ``.xz`` or ``.gz`` text for reading (decompressed on the fly, never to disk)."""
    if path.suffix == ".xz":
        return lzma.open(path, "rt", encoding="utf-8", errors="replace")
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def read_sentences(path: str | os.PathLike, limit: int | None = None) -> list[str]:
    """Non-empty, stripped lines of a one-sentence-per-line file (plain, ``.xz`` or ``.gz``).

    Args:
        path: the corpus file.
        limit: stop after this many sentences (default: read all).

    Raises:
        FileNotFoundError: if ``path`` is not a file.
        ValueError: if ``limit < 1`` or the file holds no sentence.
    """
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1 or None, got {limit}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path must be a sentence file, got {path}")
    sentences = []
    with _open_text(path) as handle:
        for line in handle:
            line = line.strip()
            if line:
                sentences.append(line)
                if limit is not None and len(sentences) >= limit:
                    break
    if not sentences:
        raise ValueError(f"path must contain at least one sentence, {path} has none")
    return sentences


def sample_sentences(sentences: list[str], n: int, seed: int = 0) -> list[str]:
    """A seeded random ``n`` of ``sentences`` without replacement, in corpus order.

    A random slice rather than the first ``n`` lines: the corpus is a concatenation of
    sources (news, reviews, fiction, ...), so a prefix would hold only one of them.

    Raises:
        ValueError: if ``n < 1`` or ``n > len(sentences)``.
    """
    if not 1 <= n <= len(sentences):
        raise ValueError(f"n must be in [1, {len(sentences)}], got {n}")
    keep = np.sort(np.random.default_rng(seed).choice(len(sentences), n, replace=False))
    return [sentences[i] for i in keep]


class IndexedSentences(Dataset):
    """Items ``(index, sentence)``: SimCSE's two views are made by the encoder's dropout."""

    def __init__(self, sentences: list[str]) -> None:
        self.sentences = sentences

    def __len__(self) -> int:
        return len(self.sentences)

    def __getitem__(self, index: int) -> tuple[int, str]:
        return index, self.sentences[index]

    @staticmethod
    def collate(items: list[tuple[int, str]]) -> tuple[list[int], list[str]]:
        """``([B] indices, [B] sentences)``; sentences stay strings (tokenised by the model)."""
        return [i for i, _ in items], [s for _, s in items]


# ---------------------------------------------------------------------- STS sets


def _read_lines(path: Path) -> list[str]:
    with open(path, encoding="utf-8", errors="replace") as handle:
        return handle.read().splitlines()


def load_senteval_sts(directory: str | os.PathLike, name: str | None = None) -> STSPairs:
    """All subsets of one SentEval STS year, concatenated (SimCSE's "all" setting).

    Args:
        directory: holds ``STS.input.<subset>.txt`` / ``STS.gs.<subset>.txt`` pairs.
        name: set name (default: the directory name up to the first ``-``, e.g. ``"STS12"``).

    Raises:
        FileNotFoundError: if there is no ``STS.input.*.txt`` with a matching gold file.
        ValueError: if an input line lacks two tab-separated sentences, a gold score is not a
            number, or input and gold files have different line counts.
    """
    directory = Path(directory)
    name = name or directory.name.split("-")[0]
    s1, s2, scores, subsets = [], [], [], {}
    for input_path in sorted(directory.glob("STS.input.*.txt")):
        subset = input_path.name[len("STS.input."):-len(".txt")]
        gold_path = directory / f"STS.gs.{subset}.txt"
        if not gold_path.is_file():
            logger.warning("%s: no gold file for subset %s, skipped", directory, subset)
            continue
        inputs, golds = _read_lines(input_path), _read_lines(gold_path)
        if len(golds) > len(inputs) and not any(g.strip() for g in golds[len(inputs):]):
            golds = golds[: len(inputs)]  # trailing blank lines carry no pair
        if len(inputs) != len(golds):
            raise ValueError(f"{input_path} has {len(inputs)} lines but {gold_path} has {len(golds)}")
        kept = 0
        for number, (line, gold) in enumerate(zip(inputs, golds), start=1):
            if not gold.strip():
                continue  # no gold score: SentEval leaves the pair out
            parts = line.split("\t")
            if len(parts) < 2:
                raise ValueError(f"{input_path}:{number} must hold two tab-separated sentences")
            s1.append(parts[0].strip())
            s2.append(parts[1].strip())
            scores.append(_score(gold, gold_path, number))
            kept += 1
        subsets[subset] = kept
    if not subsets:
        raise FileNotFoundError(f"directory must hold STS.input.*.txt with STS.gs.*.txt, {directory} has none")
    return STSPairs(name, s1, s2, np.array(scores), subsets)


def load_stsb(directory: str | os.PathLike, splits: tuple[str, ...] = STSB_SPLITS) -> dict[str, STSPairs]:
    """STS Benchmark splits present in ``directory``, as ``{"STS-B dev": pairs, ...}``.

    Raises:
        FileNotFoundError: if none of ``sts-{split}.csv`` exists.
        ValueError: on an unknown split name or a malformed line.
    """
    unknown = set(splits) - set(STSB_SPLITS)
    if unknown:
        raise ValueError(f"splits must be among {STSB_SPLITS}, got {sorted(unknown)}")
    directory = Path(directory)
    found = {}
    for split in splits:
        path = directory / f"sts-{split}.csv"
        if not path.is_file():
            continue
        s1, s2, scores = [], [], []
        for number, line in enumerate(_read_lines(path), start=1):
            if not line.strip():
                continue
            parts = line.split("\t")
            if len(parts) < 7:
                raise ValueError(f"{path}:{number} must have at least 7 tab-separated fields, got {len(parts)}")
            if not parts[4].strip():
                continue
            scores.append(_score(parts[4], path, number))
            s1.append(parts[5].strip())
            s2.append(parts[6].strip())
        found[f"STS-B {split}"] = STSPairs(f"STS-B {split}", s1, s2, np.array(scores), {split: len(scores)})
    if not found:
        raise FileNotFoundError(f"directory must hold sts-{{{','.join(splits)}}}.csv, {directory} has none")
    return found


def load_sick(path: str | os.PathLike, name: str | None = None) -> STSPairs:
    """SICK relatedness pairs from one tab-separated file with a header row.

    Args:
        path: e.g. ``SICK_test_annotated.txt``.
        name: set name (default ``"SICK-R <split>"`` from the file name, e.g. ``"SICK-R test"``).

    Raises:
        ValueError: if the header lacks ``sentence_A``, ``sentence_B`` or ``relatedness_score``.
    """
    path = Path(path)
    lines = _read_lines(path)
    header = lines[0].split("\t") if lines else []
    try:
        a, b, score = (header.index(column) for column in ("sentence_A", "sentence_B", "relatedness_score"))
    except ValueError:
        raise ValueError(f"{path} must have a header with sentence_A, sentence_B, relatedness_score") from None
    if name is None:
        split = re.sub(r"^SICK_?", "", path.stem).split("_")[0] or "all"
        name = f"SICK-R {split.lower()}"
    s1, s2, scores = [], [], []
    for number, line in enumerate(lines[1:], start=2):
        parts = line.split("\t")
        if len(parts) <= max(a, b, score) or not parts[score].strip():
            continue
        s1.append(parts[a].strip())
        s2.append(parts[b].strip())
        scores.append(_score(parts[score], path, number))
    return STSPairs(name, s1, s2, np.array(scores), {path.stem: len(scores)})


def load_sts_sets(*roots: str | os.PathLike) -> dict[str, STSPairs]:
    """Every STS set found in ``roots`` (each may be a set's directory or a parent of several).

    A directory holding ``STS.input.*.txt`` is a SentEval year, one holding ``sts-*.csv`` is
    STS-B, and ``SICK*.txt`` files are SICK-R splits; subdirectories are searched one level
    deep. Logs the pair count of every set.

    Returns:
        ``{name: pairs}`` sorted by name, e.g. ``STS12``, ``STS-B dev``, ``SICK-R test``.

    Raises:
        FileNotFoundError: if a root does not exist or no set is found at all.
    """
    found: dict[str, STSPairs] = {}
    for root in roots:
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"roots must be directories, {root} is not")
        for directory in [root, *sorted(p for p in root.iterdir() if p.is_dir())]:
            if any(directory.glob("STS.input.*.txt")):
                pairs = load_senteval_sts(directory)
                found[pairs.name] = pairs
            if any(directory.glob("sts-*.csv")):
                found.update(load_stsb(directory, tuple(s for s in STSB_SPLITS if (directory / f"sts-{s}.csv").is_file())))
            for sick in sorted(directory.glob("SICK*.txt")):
                pairs = load_sick(sick)
                found[pairs.name] = pairs
    if not found:
        raise FileNotFoundError(f"no STS set (SentEval, STS-B or SICK layout) under {[str(r) for r in roots]}")
    for name, pairs in sorted(found.items()):
        logger.info("%s: %d pairs (%s)", name, len(pairs), ", ".join(f"{k} {v}" for k, v in pairs.subsets.items()))
    return dict(sorted(found.items()))


def _score(text: str, path: Path, line: int) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{path}:{line}: gold score must be a number, got {text!r}") from None
