"""Image datasets for SimCLR without torchvision: idx files, image folders and NumPy arrays.

Every loader returns an :class:`ImageData`: float32 images ``[N, C, H, W]`` in ``[0, 1]``
held in memory, integer labels ``[N]`` (kept for evaluation only; training never sees them)
and the class names. :class:`IndexedImages` wraps the images for a ``DataLoader`` whose
``batch_sampler`` is one of the package's samplers; its items are ``(index, image)`` so the
training loop can feed embeddings back with ``sampler.update(indices, ...)``.
"""

from __future__ import annotations

import gzip
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..._io import atomic_write

__all__ = [
    "FASHION_MNIST_CLASSES",
    "ImageData",
    "IndexedImages",
    "from_arrays",
    "load_fashion_mnist",
    "load_image_folder",
    "read_idx",
    "write_idx",
]

logger = logging.getLogger(__name__)

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)

# idx type byte -> big-endian NumPy dtype (http://yann.lecun.com/exdb/mnist/, "THE IDX FILE FORMAT").
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")


@dataclass
class ImageData:
    """In-memory labelled images.

    Attributes:
        images: float32 ``[N, C, H, W]`` in ``[0, 1]``.
        labels: int64 ``[N]``.
        classes: class names, ``labels`` index into it.
    """

    images: torch.Tensor
    labels: np.ndarray
    classes: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.dtype != torch.float32:
            raise ValueError(f"images must be float32 [N, C, H, W], got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError(f"labels must have shape [N] = [{self.images.shape[0]}], got {self.labels.shape}")

    def __len__(self) -> int:
        return self.images.shape[0]

    def subset(self, size: int | None, seed: int = 0) -> ImageData:
        """A random subset of ``size`` images drawn without replacement (``None``: everything).

        Raises:
            ValueError: if ``size`` is not in ``[1, N]``.
        """
        if size is None or size == len(self):
            return self
        if not 1 <= size <= len(self):
            raise ValueError(f"size must be in [1, {len(self)}], got {size}")
        chosen = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:size].sort().values
        return ImageData(self.images[chosen], self.labels[chosen.numpy()], self.classes)


class IndexedImages(Dataset):
    """Items ``(index, image)`` of a ``[N, C, H, W]`` tensor.

    Augmentation happens on whole batches in the training loop (on the training device), not
    here, so that a batch costs one set of tensor operations instead of ``B`` small ones.
    """

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor]:
        return index, self.images[index]


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an idx file (MNIST format), gzip-compressed if its name ends in ``.gz``.

    Returns:
        The array with the file's shape and (native-endian) dtype.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: on a bad magic number, unknown type byte or truncated payload.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        raw = handle.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"path {path} is not an idx file (bad magic number {raw[:4]!r})")
    dtype, ndim = np.dtype(_IDX_DTYPES[raw[2]]), raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int(s) for s in np.frombuffer(raw[4:header], dtype=">u4"))
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(f"path {path}: payload has {len(raw) - header} bytes, shape {shape} needs {expected}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write ``array`` as an idx file (gzip-compressed if the name ends in ``.gz``).

    Raises:
        ValueError: if the dtype has no idx type byte or ``array`` has more than 255 dimensions.
    """
    array = np.asarray(array)
    codes = {np.dtype(v).newbyteorder("="): k for k, v in _IDX_DTYPES.items()}
    if array.dtype not in codes or array.ndim > 255:
        raise ValueError(f"array dtype must be one of {sorted(str(d) for d in codes)}, got {array.dtype}")
    code = codes[array.dtype]
    payload = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    payload += array.astype(np.dtype(_IDX_DTYPES[code])).tobytes()
    with atomic_write(path) as handle:  # crash-safe: the old file or the new one, never a mix
        if Path(path).suffix == ".gz":
            with gzip.GzipFile(Path(path).name, "wb", fileobj=handle, mtime=0) as compressed:
                compressed.write(payload)
        else:
            handle.write(payload)


def load_fashion_mnist(root: str | os.PathLike, split: str = "train") -> ImageData:
    """Fashion-MNIST (or MNIST) from ``root/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]``.

    Args:
        root: directory with the four idx files (as distributed, or Debian's
            ``dataset-fashion-mnist``).
        split: ``"train"`` (60 000 images) or ``"test"`` (10 000 images).

    Returns:
        Images ``[N, 1, 28, 28]`` in ``[0, 1]`` and labels ``[N]``.

    Raises:
        ValueError: on another ``split`` or images and labels of different lengths.
        FileNotFoundError: if a file is missing.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    prefix = "train" if split == "train" else "t10k"
    images = read_idx(_find(Path(root), f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(_find(Path(root), f"{prefix}-labels-idx1-ubyte"))
    if images.ndim != 3 or labels.shape != (images.shape[0],):
        raise ValueError(f"root {root}: images {images.shape} and labels {labels.shape} do not match")
    return from_arrays(images, labels, classes=FASHION_MNIST_CLASSES)


def _find(root: Path, stem: str) -> Path:
    for candidate in (root / f"{stem}.gz", root / stem):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"root must contain {stem}[.gz]; looked in {root}")


def from_arrays(images: np.ndarray, labels: np.ndarray, classes: tuple[str, ...] | None = None) -> ImageData:
    """Images from NumPy arrays.

    Args:
        images: ``[N, H, W]`` (grey) or ``[N, H, W, C]`` with ``C`` in {1, 3} (channels last,
            as images usually come), either uint8 in ``[0, 255]`` or float in ``[0, 1]``.
        labels: integer ``[N]``, values in ``[0, num_classes)``.
        classes: class names (default ``"0" .. str(max label)``).

    Raises:
        ValueError: on another shape or dtype, float values outside ``[0, 1]``, labels that are
            not integers in range, or mismatched lengths.
    """
    images, labels = np.asarray(images), np.asarray(labels)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"images must be [N, H, W] or [N, H, W, C] with C in (1, 3), got {images.shape}")
    if images.dtype == np.uint8:
        pixels = images.astype(np.float32) / 255.0
    elif np.issubdtype(images.dtype, np.floating):
        if images.size and (not np.isfinite(images).all() or images.min() < 0 or images.max() > 1):
            raise ValueError("images of float dtype must be finite and in [0, 1]")
        pixels = images.astype(np.float32)
    else:
        raise ValueError(f"images must be uint8 or float, got {images.dtype}")
    if labels.shape != (images.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integer [N] = [{images.shape[0]}], got {labels.dtype} {labels.shape}")
    if labels.size and labels.min() < 0:
        raise ValueError("labels must be non-negative")
    count = int(labels.max()) + 1 if labels.size else 0
    classes = tuple(classes) if classes is not None else tuple(str(c) for c in range(count))
    if len(classes) < count:
        raise ValueError(f"classes must name every label (max label {count - 1}), got {len(classes)} names")
    tensor = torch.from_numpy(np.ascontiguousarray(pixels.transpose(0, 3, 1, 2)))
    return ImageData(tensor, labels.astype(np.int64), classes)


def load_image_folder(
    root: str | os.PathLike, split: str | None = None, *, size: int | None = None, channels: int | None = None
) -> ImageData:
    """Images in ``root/split/CLASS/*.png|jpg|...`` (``root/CLASS/...`` when ``split`` is None).

    Classes are the sub-directory names in sorted order, so two splits agree on label numbers
    as long as they hold the same classes.

    Args:
        root: the dataset directory.
        split: sub-directory of ``root`` with one folder per class (e.g. ``"train"``).
        size: resize every image to ``size x size`` (bilinear); ``None`` keeps the size, which
            must then be the same for every image.
        channels: 1 (grey) or 3 (RGB); ``None`` takes 1 if every image is greyscale, else 3.

    Raises:
        ValueError: on ``channels`` other than None, 1 or 3, ``size`` < 1, or differing sizes.
        FileNotFoundError: if the directory is missing or holds no images.
    """
    from PIL import (
        Image,  # Pillow ships with matplotlib; imported here so the module loads without it.
    )

    if channels not in (None, 1, 3):
        raise ValueError(f"channels must be None, 1 or 3, got {channels}")
    if size is not None and size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    directory = Path(root) / split if split is not None else Path(root)
    if not directory.is_dir():
        raise FileNotFoundError(f"root/split must be a directory, got {directory}")
    classes = sorted(p.name for p in directory.iterdir() if p.is_dir())
    files = [(f, c) for c, name in enumerate(classes)
             for f in sorted((directory / name).iterdir()) if f.suffix.lower() in _IMAGE_SUFFIXES]
    if not files:
        raise FileNotFoundError(f"no images in {directory}/CLASS/ (suffixes {_IMAGE_SUFFIXES})")
    pictures = []
    for path, _ in files:
        with Image.open(path) as picture:
            picture.load()
            pictures.append(picture.copy())
    if channels is None:
        channels = 1 if all(p.mode in ("L", "1", "I", "I;16") for p in pictures) else 3
    mode = "L" if channels == 1 else "RGB"
    arrays = []
    for picture, (path, _) in zip(pictures, files):
        picture = picture.convert(mode)
        if size is not None and picture.size != (size, size):
            picture = picture.resize((size, size), Image.BILINEAR)
        arrays.append(np.asarray(picture, dtype=np.uint8))
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise ValueError(f"images in {directory} have different sizes {sorted(shapes)[:3]}; pass size=")
    labels = np.array([c for _, c in files], dtype=np.int64)
    logger.info("%s: %d images, %d classes, shape %s", directory, len(files), len(classes), arrays[0].shape)
    return from_arrays(np.stack(arrays), labels, classes=tuple(classes))
