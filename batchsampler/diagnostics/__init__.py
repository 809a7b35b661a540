"""Diagnostics: see what a sampler does to batches, to its graph, and to training time.

* Batches (:mod:`.batches`): hardness (in-batch cosine similarity: mean and 10/50/90 %
  quantiles), the same-label share (a false-negative proxy), coverage and repeats, per batch
  (:func:`batch_statistics`) or per epoch (:func:`summarize_epoch`).
* Sampler state (:mod:`.graph`): graph degrees, weakly connected components and neighbour
  label rates (:func:`summarize_graph`, with the rule of thumb
  :func:`expected_same_label_neighbors`), walk counters (:func:`summarize_walk`) and bank
  staleness (:func:`summarize_staleness`).
* Training (:mod:`.callback`): :class:`SamplerMonitor` records all of it per epoch, with the
  time spent in the sampler against the whole step, and writes RUN.json;
  ``batchsampler report RUN.json`` (or :func:`batchsampler.diagnostics.plots.plot_runs`)
  draws the plots. Plotting is the only part that imports matplotlib.
"""

from .batches import QUANTILES, BatchStatistics, EpochSummary, batch_statistics, summarize_epoch
from .callback import SamplerMonitor
from .graph import (
    GraphSummary,
    expected_same_label_neighbors,
    summarize_graph,
    summarize_staleness,
    summarize_walk,
)
from .runfile import RUN_FORMAT, load_runs, merge_runs, write_runs

__all__ = [
    "QUANTILES",
    "RUN_FORMAT",
    "BatchStatistics",
    "EpochSummary",
    "GraphSummary",
    "SamplerMonitor",
    "batch_statistics",
    "expected_same_label_neighbors",
    "load_runs",
    "merge_runs",
    "summarize_epoch",
    "summarize_graph",
    "summarize_staleness",
    "summarize_walk",
    "write_runs",
]
