"""TU graph-classification datasets from a local directory, ready for GraphCL."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from pathlib import Path

import torch
from torch.utils.data import Dataset
from torch_geometric.data import Data
from torch_geometric.datasets import TUDataset
from torch_geometric.utils import degree

from .. import cache_dir as _user_cache_dir
from .augment import augment_graph

__all__ = ["load_tu_dataset", "GraphCLDataset", "default_cache_dir"]

logger = logging.getLogger(__name__)

MAX_DEGREE_FEATURE = 64
"""Degrees above this share the last one-hot slot (keeps features small on dense graphs)."""


def default_cache_dir() -> Path:
    """Where processed copies go: ``<per-user cache>/tu``, see
    :func:`batchsampler.integrations.cache_dir` (``$BATCHSAMPLER_CACHE``, else
    ``$XDG_CACHE_HOME/batchsampler``, else ``~/.cache/batchsampler``), created with mode 0o700."""
    return _user_cache_dir("tu")


def _content_key(raw: Path) -> str:
    """A digest of the names and bytes of the files in ``raw``: a changed source gets a new entry."""
    digest = hashlib.sha256()
    for path in sorted(p for p in raw.iterdir() if p.is_file()):
        digest.update(path.name.encode() + b"\0")
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def load_tu_dataset(name: str, root: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> TUDataset:
    """Load TU dataset ``name`` from ``root/name/raw/`` without downloading.

    The raw files are copied to a cache entry ``cache_dir/NAME-DIGEST/`` first, because
    torch_geometric writes ``processed/`` next to ``raw/`` and ``root`` may be read-only. The
    entry is keyed by the raw files' contents, and is built (copied and processed) in a fresh
    private temporary directory, then renamed into place in one step: concurrent loaders never
    see a half-written entry and never delete one another's files (the loser of a race discards
    its own copy). Graphs without node features get one-hot degree features (degrees above
    :data:`MAX_DEGREE_FEATURE` share one slot).

    Args:
        name: dataset name as in the TU collection (``"MUTAG"``, ``"PROTEINS"``, ...).
        root: directory holding ``name/raw/name_A.txt`` etc.
        cache_dir: where to copy and process (default :func:`default_cache_dir`, per user).

    Raises:
        FileNotFoundError: if ``root/name/raw`` does not exist or lacks ``name_A.txt``.
    """
    raw = Path(root) / name / "raw"
    if not (raw / f"{name}_A.txt").is_file():
        raise FileNotFoundError(f"root must contain {name}/raw/{name}_A.txt (TU layout); looked in {raw}")
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache.mkdir(mode=0o700, parents=True, exist_ok=True)
    entry = cache / f"{name}-{_content_key(raw)}"
    if not (entry / name / "processed").is_dir():
        staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=cache))
        try:
            shutil.copytree(raw, staging / name / "raw")
            TUDataset(str(staging), name)  # processes into staging/name/processed
            try:
                os.rename(staging, entry)
            except OSError:  # the entry exists: another process renamed its copy first
                if not entry.is_dir():
                    raise
                logger.debug("another process cached %s first; using its entry", name)
        finally:
            shutil.rmtree(staging, ignore_errors=True)  # only ever our own directory
    dataset = TUDataset(str(entry), name)
    if dataset.num_node_features == 0:
        dataset.transform = _degree_features
        logger.info("%s has no node features: using one-hot degrees", name)
    return dataset


def _degree_features(data: Data) -> Data:
    data = data.clone()
    deg = degree(data.edge_index[0], data.num_nodes, dtype=torch.long).clamp(max=MAX_DEGREE_FEATURE)
    data.x = torch.nn.functional.one_hot(deg, MAX_DEGREE_FEATURE + 1).float()
    return data


class GraphCLDataset(Dataset):
    """Items ``(index, view_1, view_2)``: two augmented views of graph ``index``.

    Views are drawn from a generator seeded by ``(seed, index, draw count)``, so a run is
    reproducible whatever order the sampler asks for graphs in.

    Args:
        graphs: a sequence of :class:`torch_geometric.data.Data`.
        augmentations: names from :data:`~batchsampler.integrations.graph.augment.AUGMENTATIONS`; each view
            uses one chosen at random.
        ratio: the augmentation strength (GraphCL: 0.2).
        seed: base seed of the views.
    """

    def __init__(self, graphs, augmentations: tuple[str, ...], ratio: float = 0.2, seed: int = 0) -> None:
        self.graphs = graphs
        self.augmentations = tuple(augmentations)
        self.ratio = ratio
        self.seed = seed
        self._draws = [0] * len(graphs)

    def __len__(self) -> int:
        return len(self.graphs)

    def __getitem__(self, index: int) -> tuple[int, Data, Data]:
        generator = torch.Generator().manual_seed(hash((self.seed, index, self._draws[index])) % (2**63))
        self._draws[index] += 1
        graph = self.graphs[index]
        views = []
        for _ in range(2):
            choice = self.augmentations[int(torch.randint(len(self.augmentations), (1,), generator=generator))]
            views.append(augment_graph(graph, choice, self.ratio, generator))
        return index, views[0], views[1]
