"""Vision modality: SimCLR (Chen et al., ICML 2020) with the batch samplers, without torchvision.

Pieces, one per module:

* :mod:`~batchsampler.integrations.vision.data`: Fashion-MNIST / MNIST idx files, ``root/split/CLASS/*.png``
  image folders and NumPy arrays, all as in-memory float images ``[N, C, H, W]`` with labels
  kept for evaluation only.
* :mod:`~batchsampler.integrations.vision.augment`: SimCLR views (random resized crop, flip, colour jitter,
  grayscale) as batched tensor operations with an explicit generator, run on the training device.
* :mod:`~batchsampler.integrations.vision.model`: a small ResNet for 28-32 px images (3x3 stem, no
  max-pool, configurable width and depth) and the projection head.
* :mod:`~batchsampler.integrations.vision.evaluate`: weighted kNN monitor (k = 200, temperature 0.1) and a
  logistic-regression linear probe on frozen features.
* :mod:`~batchsampler.integrations.vision.train`: the training loop, with any sampler and loss of the package.
* :mod:`~batchsampler.integrations.vision.reproduce`: the comparison grid behind ``batchsampler reproduce vision``.

Requires only torch, scikit-learn and Pillow (``pip install "batchsampler[vision]"``), imported on first use of a name below.
"""

from .. import _lazy_exports

_EXPORTS = {
    "AugmentConfig": "augment",
    "ImageData": "data",
    "IndexedImages": "data",
    "SimCLRConfig": "train",
    "SimCLRModel": "model",
    "SmallResNet": "model",
    "embed_images": "evaluate",
    "from_arrays": "data",
    "knn_monitor": "evaluate",
    "linear_probe": "evaluate",
    "load_fashion_mnist": "data",
    "load_image_folder": "data",
    "read_idx": "data",
    "simclr_view": "augment",
    "train_simclr": "train",
    "write_idx": "data",
}
"""Public name -> the submodule that defines it (imported on first use)."""

__all__ = list(_EXPORTS)
__getattr__, __dir__ = _lazy_exports(__name__, _EXPORTS)
