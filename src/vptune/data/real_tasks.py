"""Offline tasks from real images that ship in packages: Fashion-MNIST (Debian) and sklearn digits."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from vptune.data.taskdata import PART_SIZES, TaskArrays
from vptune.errors import DataError

FASHION_MNIST_ENV = "VPTUNE_FASHION_MNIST_DIR"
FASHION_MNIST_DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
# IDX magic numbers: unsigned bytes with 3 dimensions (images) or 1 (labels).
_IDX_IMAGES, _IDX_LABELS = 2051, 2049


def fashion_mnist(rng: np.random.Generator, n_test: int | None) -> TaskArrays:
    """1000 seeded training images from the 60k train file, `n_test` (default 1000) from t10k."""
    train_x, train_y = fashion_mnist_arrays("train")
    test_x, test_y = fashion_mnist_arrays("t10k")
    n_test = 1000 if n_test is None else n_test
    return vtab_subsets(train_x, train_y, test_x, test_y, n_test, rng, FASHION_MNIST_CLASSES)


def digits(rng: np.random.Generator, n_test: int | None) -> TaskArrays:
    """sklearn's 1797 8x8 digits: 1000 seeded for training, the other 797 (or `n_test` of them) for test."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:
        raise DataError("task 'digits' needs scikit-learn; pip install 'vptune[offline]' or scikit-learn") from err
    data = load_digits()
    # Pixel values are 0..16; stretch them to the full 8-bit range.
    images = np.round(data.images * (255 / 16)).astype(np.uint8)
    order = rng.permutation(len(images))
    train, test = order[:1000], order[1000:]
    n_test = len(test) if n_test is None else n_test
    names = [str(d) for d in range(10)]
    return vtab_subsets(images[train], data.target[train], images[test], data.target[test], n_test, rng, names)


def vtab_subsets(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    n_test: int,
    rng: np.random.Generator,
    class_names: list[str],
) -> TaskArrays:
    """Seeded random 800 + 200 training images and `n_test` test images, like VTAB-1k's sampling."""
    if not 0 < n_test <= len(test_x):
        raise DataError(f"n_test={n_test} is out of range; this task has 1..{len(test_x)} test images")
    picked = rng.permutation(len(train_x))[: sum(PART_SIZES.values())]
    train800, val200 = picked[: PART_SIZES["train800"]], picked[PART_SIZES["train800"] :]
    test = rng.permutation(len(test_x))[:n_test]
    parts = {
        "train800": (train_x[train800], train_y[train800]),
        "val200": (train_x[val200], train_y[val200]),
        "test": (test_x[test], test_y[test]),
    }
    return TaskArrays(parts, class_names)


def fashion_mnist_dir() -> Path:
    """Folder of the Fashion-MNIST .gz files: $VPTUNE_FASHION_MNIST_DIR or the Debian package's."""
    folder = Path(os.environ.get(FASHION_MNIST_ENV) or FASHION_MNIST_DEFAULT_DIR)
    missing = [f for f in _fashion_files() if not (folder / f).is_file()]
    if missing:
        raise DataError(
            f"Fashion-MNIST files {', '.join(missing)} not found in {folder}; as root run "
            "'apt-get install dataset-fashion-mnist', or run 'apt-get download dataset-fashion-mnist && "
            "dpkg -x dataset-fashion-mnist_*.deb DIR' and set "
            f"{FASHION_MNIST_ENV}=DIR/usr/share/datasets/fashion-mnist"
        )
    return folder


def fashion_mnist_arrays(part: str) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST's (N, 28, 28) uint8 images and int64 labels of `part`: "train" (60k) or "t10k" (10k)."""
    return _read_idx_pair(fashion_mnist_dir(), part)


def _fashion_files() -> list[str]:
    return [f"{part}-{kind}-ubyte.gz" for part in ("train", "t10k") for kind in ("images-idx3", "labels-idx1")]


def _read_idx_pair(folder: Path, part: str) -> tuple[np.ndarray, np.ndarray]:
    images = _read_idx(folder / f"{part}-images-idx3-ubyte.gz", _IDX_IMAGES, header=16)
    labels = _read_idx(folder / f"{part}-labels-idx1-ubyte.gz", _IDX_LABELS, header=8)
    if len(images) != len(labels):
        raise DataError(f"{folder}: {part} has {len(images)} images but {len(labels)} labels; reinstall the files")
    return images, labels.astype(np.int64)


def _read_idx(path: Path, magic: int, header: int) -> np.ndarray:
    """Parse an IDX file: big-endian int32 magic and sizes, then raw uint8 data."""
    try:
        raw = gzip.decompress(path.read_bytes())
    except (OSError, EOFError) as err:
        raise DataError(f"{path} is not a readable gzip file ({err}); reinstall dataset-fashion-mnist") from err
    dims = np.frombuffer(raw[:header], dtype=">i4")
    if len(dims) < 2 or dims[0] != magic or len(raw) != header + int(np.prod(dims[1:])):
        raise DataError(f"{path} is not an IDX file of the expected kind/size; reinstall dataset-fashion-mnist")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims[1:])
