"""batchsampler: hard-negative mini-batch sampling for contrastive learning.

BatchSampler (Yang et al., KDD 2023) chooses *which* instances share a mini-batch: it links
every instance to its most similar instances among random candidates (a proximity graph) and
collects batches by random walk with restart, so batches hold hard-to-distinguish instances
that are rarely false negatives. All samplers plug into
``torch.utils.data.DataLoader(dataset, batch_sampler=sampler)``.
"""

from .bank import EmbeddingBank
from .base import BaseBatchSampler
from .graph_sampler import GraphBatchSampler, RefreshStats
from .baselines import KNNBatchSampler, UniformBatchSampler
from .feedback import FeedbackBatchSampler
from .graph import ProximityGraph
from .sampler import BatchSampler, scaled_graph_size
from .walk import WalkStats

__version__ = "0.1.0"

SAMPLERS: dict[str, type[BaseBatchSampler]] = {
    "uniform": UniformBatchSampler,
    "knn": KNNBatchSampler,
    "batchsampler": BatchSampler,
}
"""Samplers by the names scripts use (``--sampler uniform|knn|batchsampler``)."""

__all__ = [
    "BatchSampler",
    "UniformBatchSampler",
    "KNNBatchSampler",
    "BaseBatchSampler",
    "FeedbackBatchSampler",
    "GraphBatchSampler",
    "ProximityGraph",
    "EmbeddingBank",
    "WalkStats",
    "RefreshStats",
    "SAMPLERS",
    "scaled_graph_size",
    "__version__",
]
