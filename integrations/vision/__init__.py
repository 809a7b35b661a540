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

Requires only torch, scikit-learn and Pillow (``pip install batchsampler[vision]``).
"""

from .augment import AugmentConfig, simclr_view
from .data import (
    ImageData,
    IndexedImages,
    from_arrays,
    load_fashion_mnist,
    load_image_folder,
    read_idx,
    write_idx,
)
from .evaluate import embed_images, knn_monitor, linear_probe
from .model import SimCLRModel, SmallResNet
from .train import SimCLRConfig, train_simclr

__all__ = [
    "AugmentConfig",
    "ImageData",
    "IndexedImages",
    "SimCLRConfig",
    "SimCLRModel",
    "SmallResNet",
    "embed_images",
    "from_arrays",
    "knn_monitor",
    "linear_probe",
    "load_fashion_mnist",
    "load_image_folder",
    "read_idx",
    "simclr_view",
    "train_simclr",
    "write_idx",
]
