"""Graph modality: unsupervised GraphCL (You et al., NeurIPS 2020) with the batch samplers.

Pieces, one per module:

* :mod:`~batchsampler.integrations.graph.data`: TU datasets read from any directory in the standard
  ``root/NAME/raw/`` layout (copied to a cache, so the source stays read-only), with degree
  features for datasets that have none.
* :mod:`~batchsampler.integrations.graph.augment`: GraphCL's four augmentations (node dropping, edge
  perturbation, attribute masking, subgraph).
* :mod:`~batchsampler.integrations.graph.model`: the GIN encoder (sum pooling, concatenated layer readouts)
  and projection head.
* :mod:`~batchsampler.integrations.graph.evaluate`: frozen embeddings -> linear SVM, C chosen by inner
  cross-validation, 10-fold stratified outer cross-validation accuracy.
* :mod:`~batchsampler.integrations.graph.train`: the training loop, with any sampler and loss of the package.
* :mod:`~batchsampler.integrations.graph.reproduce`: the comparison grid behind ``batchsampler reproduce graph``.

Requires ``torch_geometric`` (``pip install "batchsampler[graph]"``), imported on first use of a name below.
"""

from .. import _lazy_exports

_EXPORTS = {
    "AUGMENTATIONS": "augment",
    "augment_graph": "augment",
    "GraphCLDataset": "data",
    "load_tu_dataset": "data",
    "svm_accuracy": "evaluate",
    "GINEncoder": "model",
    "GraphCLModel": "model",
    "GraphCLConfig": "train",
    "train_graphcl": "train",
}
"""Public name -> the submodule that defines it (imported on first use)."""

__all__ = list(_EXPORTS)
__getattr__, __dir__ = _lazy_exports(__name__, _EXPORTS)
