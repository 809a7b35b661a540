from pathlib import Path

import numpy as np
import pytest

FASHION_ROOT = Path(__file__).resolve().parents[4] / "shared" / "data" / "fashion-mnist"


@pytest.fixture(scope="session")
def fashion_root():
    if not (FASHION_ROOT / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"shared Fashion-MNIST not found at {FASHION_ROOT}")
    return FASHION_ROOT


def pattern_images(per_class: int, size: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """uint8 ``[3 * per_class, size, size]`` images of three easy classes (horizontal stripes,
    vertical stripes, a centred square) with random phase and noise, and their labels."""
    rng = np.random.default_rng(seed)
    grid = np.arange(size)
    images, labels = [], []
    for label in range(3):
        for _ in range(per_class):
            phase = rng.integers(0, 4)
            if label == 0:
                image = np.tile(((grid + phase) // 2 % 2)[:, None], (1, size))
            elif label == 1:
                image = np.tile(((grid + phase) // 2 % 2)[None, :], (size, 1))
            else:
                image = np.zeros((size, size))
                image[size // 4 + phase // 2: 3 * size // 4, size // 4: 3 * size // 4 - phase // 2] = 1
            noisy = 0.8 * image + 0.2 * rng.random((size, size))
            images.append((255 * noisy).astype(np.uint8))
            labels.append(label)
    return np.stack(images), np.array(labels)


@pytest.fixture(scope="session")
def patterns():
    """Train (96 images) and test (48 images) :class:`ImageData` of :func:`pattern_images`."""
    from batchsampler.integrations.vision import from_arrays

    train = from_arrays(*pattern_images(32, seed=0), classes=("rows", "columns", "square"))
    test = from_arrays(*pattern_images(16, seed=1), classes=("rows", "columns", "square"))
    return train, test


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny convolutions gain nothing from threads; on busy shared cores they lose a lot."""
    import torch
    from threadpoolctl import threadpool_limits

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(threads)
