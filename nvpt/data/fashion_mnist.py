"""Fashion-MNIST read from the official idx files (28x28 grayscale, 10 classes).

data.root holds train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz,
t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz (Debian's dataset-fashion-mnist
installs them in /usr/share/datasets/fashion-mnist); uncompressed files and torchvision's
<root>/FashionMNIST/raw/ folder are accepted too. val is a seeded per-class data.val_fraction
split of the training images; data.subset keeps a seeded class-balanced N of them first.
"""
from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from nvpt.data import ArrayImages, Splits, holdout_split, torchvision_download
from nvpt.data.transforms import build_transform
from nvpt.errors import NVPTError

CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_UBYTE = 0x08  # idx type code of unsigned bytes


def read_idx(path: Path) -> np.ndarray:
    """Array of an idx file (optionally gzipped): 0, 0, type code, ndim, ndim big-endian uint32 sizes, data."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise NVPTError(f"fashion_mnist: cannot read {path} ({exc}); delete it and fetch the file again") from None
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] != _UBYTE:
        raise NVPTError(f"fashion_mnist: {path} is not an idx file of unsigned bytes; delete it and fetch the file again")
    ndim = data[3]
    start = 4 + 4 * ndim
    shape = tuple(int(n) for n in np.frombuffer(data[4:start], ">u4")) if len(data) >= start else None
    if shape is None or len(data) - start != int(np.prod(shape)):
        raise NVPTError(f"fashion_mnist: {path} is truncated or has extra bytes; delete it and fetch the file again")
    return np.frombuffer(data, np.uint8, offset=start).reshape(shape)


def _find(root: Path, name: str) -> Path | None:
    for folder in (root, root / "FashionMNIST" / "raw"):
        for candidate in (folder / f"{name}.gz", folder / name):
            if candidate.is_file():
                return candidate
    return None


def _download(root: Path) -> None:
    from torchvision.datasets import FashionMNIST  # only needed for this optional path

    torchvision_download(lambda: FashionMNIST(root=root, train=True, download=True), "fashion_mnist", root,
                         "use apt-get install dataset-fashion-mnist instead")


def load_split(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images [N,H,W] and int64 labels [N] of 'train' or 'test'."""
    arrays = []
    for name in FILES[split]:
        path = _find(root, name)
        if path is None:
            raise NVPTError(
                f"fashion_mnist: {name}.gz not found in {root}; run `apt-get install dataset-fashion-mnist` and set "
                f"data.root=/usr/share/datasets/fashion-mnist, or pass data.download=true on a machine with internet"
            )
        arrays.append((path, read_idx(path)))
    (image_path, images), (label_path, labels) = arrays
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise NVPTError(
            f"fashion_mnist: {image_path} {images.shape} and {label_path} {labels.shape} do not hold matching images and labels"
        )
    if labels.size and labels.max() >= len(CLASSES):
        raise NVPTError(f"fashion_mnist: {label_path} has label {labels.max()}, but there are only {len(CLASSES)} classes")
    return images, labels.astype(np.int64)


def balanced_subset(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Sorted indices of n items taken round-robin over the classes in a seeded random order."""
    order = np.random.default_rng(seed).permutation(len(labels))
    rank = np.empty(len(labels), dtype=np.int64)  # position of each item among its class in `order`
    for c in np.unique(labels):
        members = order[labels[order] == c]
        rank[members] = np.arange(len(members))
    return np.sort(order[np.argsort(rank[order], kind="stable")][:n])


def build(cfg, img_size: int, in_chans: int) -> Splits:
    root = Path(cfg.data.root)
    if cfg.data.download and any(_find(root, name) is None for names in FILES.values() for name in names):
        _download(root)
    train_images, train_labels = load_split(root, "train")
    test_images, test_labels = load_split(root, "test")

    pool = np.arange(len(train_labels))
    if cfg.data.subset is not None and cfg.data.subset < len(pool):
        pool = balanced_subset(train_labels, cfg.data.subset, cfg.seed)
    keep, held = holdout_split(train_labels[pool], cfg.data.val_fraction, cfg.seed)

    train_tf = build_transform(cfg.data.transform, img_size, in_chans, train=True)
    eval_tf = build_transform(cfg.data.transform, img_size, in_chans, train=False)
    val = ArrayImages(train_images, train_labels, pool[held], eval_tf) if held else None
    return Splits(
        ArrayImages(train_images, train_labels, pool[keep], train_tf),
        val,
        ArrayImages(test_images, test_labels, np.arange(len(test_labels)), eval_tf),
        list(CLASSES),
    )
