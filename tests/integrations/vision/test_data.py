
import numpy as np
import pytest
import torch
from PIL import Image

from batchsampler.integrations.vision import (
    from_arrays,
    load_fashion_mnist,
    load_image_folder,
    read_idx,
    write_idx,
)


@pytest.mark.parametrize("name", ["a-idx3-ubyte", "a-idx3-ubyte.gz"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_idx_round_trip(tmp_path, name, dtype):
    array = (np.arange(2 * 3 * 5) - 7).astype(dtype).reshape(2, 3, 5) if dtype != np.uint8 else \
        np.arange(30, dtype=np.uint8).reshape(2, 3, 5)
    write_idx(tmp_path / name, array)
    back = read_idx(tmp_path / name)
    assert back.dtype == array.dtype and back.shape == (2, 3, 5)
    np.testing.assert_array_equal(back, array)


def test_idx_layout_matches_the_mnist_specification(tmp_path):
    write_idx(tmp_path / "labels", np.array([3, 1, 2], dtype=np.uint8))
    # magic 0x00000801 (ubyte, 1 dimension), big-endian count 3, then the bytes.
    assert (tmp_path / "labels").read_bytes() == bytes([0, 0, 8, 1, 0, 0, 0, 3, 3, 1, 2])
    (tmp_path / "ints").write_bytes(bytes([0, 0, 0x0C, 1, 0, 0, 0, 2]) + np.array([1, -2], ">i4").tobytes())
    np.testing.assert_array_equal(read_idx(tmp_path / "ints"), [1, -2])


def test_idx_reader_rejects_bad_files(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x02\x08\x01\x00\x00\x00\x01\x05")
    with pytest.raises(ValueError, match="magic"):
        read_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes(bytes([0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 2, 1, 2, 3]))
    with pytest.raises(ValueError, match="payload"):
        read_idx(tmp_path / "short")
    with pytest.raises(ValueError, match="dtype"):
        write_idx(tmp_path / "x", np.zeros(2, dtype=np.int64))


def _write_fashion(root, n_train=6, n_test=4):
    root.mkdir()
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        images[0, 0, 0], images[0, 0, 1] = 255, 0
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(root / f"{prefix}-labels-idx1-ubyte", (np.arange(n) % 10).astype(np.uint8))  # uncompressed
    return root


def test_fashion_mnist_loader_on_generated_files(tmp_path):
    root = _write_fashion(tmp_path / "fm")
    train, test = load_fashion_mnist(root, "train"), load_fashion_mnist(root, "test")
    assert train.images.shape == (6, 1, 28, 28) and test.images.shape == (4, 1, 28, 28)
    assert train.images.dtype == torch.float32
    assert train.images[0, 0, 0, 0] == 1.0 and train.images[0, 0, 0, 1] == 0.0
    np.testing.assert_array_equal(test.labels, [0, 1, 2, 3])
    assert train.classes[9] == "Ankle boot"
    with pytest.raises(ValueError, match="split"):
        load_fashion_mnist(root, "validation")
    (root / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError, match="t10k-labels"):
        load_fashion_mnist(root, "test")


def test_shared_fashion_mnist(fashion_root):
    test = load_fashion_mnist(fashion_root, "test")
    assert test.images.shape == (10_000, 1, 28, 28)
    assert np.bincount(test.labels).tolist() == [1000] * 10
    assert 0.0 <= float(test.images.min()) and float(test.images.max()) == 1.0


def _save(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_image_folder_labels_channels_and_resizing(tmp_path):
    for split, n in (("train", 3), ("test", 2)):
        for c, name in enumerate(["zebra", "ant"]):  # sorted order gives ant = 0, zebra = 1
            for i in range(n):
                _save(tmp_path / split / name / f"{i}.png", np.full((8, 8), 100 * c + i, dtype=np.uint8))
    (tmp_path / "train" / "ant" / "notes.txt").write_text("not an image")
    train = load_image_folder(tmp_path, "train")
    assert train.classes == ("ant", "zebra") and train.images.shape == (6, 1, 8, 8)
    np.testing.assert_array_equal(train.labels, [0, 0, 0, 1, 1, 1])
    # Files come class by class: ant/0..2.png (values 100..102), then zebra/0..2.png (0..2).
    assert torch.allclose(train.images[:, 0, 0, 0] * 255, torch.tensor([100.0, 101, 102, 0, 1, 2]))
    resized = load_image_folder(tmp_path, "test", size=4, channels=3)
    assert resized.images.shape == (4, 3, 4, 4)


def test_image_folder_rgb_and_errors(tmp_path):
    rgb = np.zeros((6, 6, 3), dtype=np.uint8)
    rgb[..., 0] = 255
    _save(tmp_path / "data" / "red" / "a.jpg", rgb)
    _save(tmp_path / "data" / "red" / "b.png", rgb)
    data = load_image_folder(tmp_path, "data")
    assert data.images.shape == (2, 3, 6, 6)
    assert torch.allclose(data.images[1, 0], torch.ones(6, 6)) and float(data.images[1, 1:].max()) == 0.0
    _save(tmp_path / "data" / "red" / "c.png", np.zeros((5, 5, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="different sizes"):
        load_image_folder(tmp_path, "data")
    with pytest.raises(ValueError, match="channels"):
        load_image_folder(tmp_path, "data", channels=2)
    with pytest.raises(FileNotFoundError):
        load_image_folder(tmp_path, "missing")
    (tmp_path / "empty" / "class").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no images"):
        load_image_folder(tmp_path, "empty")


def test_from_arrays_layouts_and_validation():
    grey = from_arrays(np.full((2, 4, 5), 255, dtype=np.uint8), np.array([0, 1]))
    assert grey.images.shape == (2, 1, 4, 5) and float(grey.images.min()) == 1.0 and grey.classes == ("0", "1")
    rgb = np.zeros((1, 4, 5, 3), dtype=np.float32)
    rgb[0, 1, 2, 2] = 0.5  # channels last -> channel 2, row 1, column 2
    assert from_arrays(rgb, np.array([0])).images[0, 2, 1, 2] == 0.5
    with pytest.raises(ValueError, match="images must be"):
        from_arrays(np.zeros((2, 4, 4, 2)), np.array([0, 1]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        from_arrays(np.full((2, 4, 4), 2.0), np.array([0, 1]))
    with pytest.raises(ValueError, match="uint8 or float"):
        from_arrays(np.zeros((2, 4, 4), dtype=np.int32), np.array([0, 1]))
    with pytest.raises(ValueError, match="labels"):
        from_arrays(np.zeros((2, 4, 4)), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="labels"):
        from_arrays(np.zeros((2, 4, 4)), np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="classes"):
        from_arrays(np.zeros((2, 4, 4)), np.array([0, 2]), classes=("a", "b"))


def test_subset_is_seeded_and_checked(patterns):
    train, _ = patterns
    a, b = train.subset(10, seed=3), train.subset(10, seed=3)
    assert torch.equal(a.images, b.images) and (a.labels == b.labels).all() and len(a) == 10
    assert not torch.equal(a.images, train.subset(10, seed=4).images)
    assert train.subset(None) is train
    with pytest.raises(ValueError, match="size"):
        train.subset(0)
