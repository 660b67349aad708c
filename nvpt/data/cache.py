"""Decode once: a split's decoded, resized images kept as uint8, shared by the epochs, the evaluation sets and the
runs of a task.

Every image-file data set (DTD, the VTAB-1k folders, the torchvision tasks, image folders) decodes and resizes
each JPEG again for every epoch and every evaluation set. When a split's transform is deterministic (the VTAB
recipe: resize to the model size; FGVC evaluation: resize + centre crop) its output is a fixed uint8 image, so
`cached_dataset` runs the transform once per image and keeps the result as an array [N,C,H,W] of uint8:

    data.cache=auto    image files and arrays (DTD, VTAB-1k folders, torchvision tasks, image_folder,
                       Fashion-MNIST, synthetic): the disk cache; the textures' crops: memory
    data.cache=memory  in this process's memory up to data.cache_memory_gb per set, the disk cache above
    data.cache=disk    the disk cache (the textures, which have no file list or array to key it: memory)
    data.cache=off     decode as before

The disk cache is one uncompressed .npy per set in data.cache_dir (default <output_dir>/data-cache), named by a
hash of what decides its pixels: every file's path, size and modification time (or the source array's bytes),
the transform (size, interpolation, crop, channel mode), Pillow's and torchvision's versions and CACHE_VERSION.
A changed file list, size or transform is a new file; nothing is ever read from a stale one. It is written to a
temporary file and renamed (nvpt.io.atomic_write) under an exclusive lock (fcntl) on `<file>.lock`, so of several
processes (one per GPU) one decodes and the others wait and then read it; it is opened with
np.load(mmap_mode="r"), so they share it through the page cache.

A cached set yields uint8 images [C,H,W]; `unit_float` turns a batch into the float [0,1] images of
torchvision's ToTensor on the device, bit for bit (a 256-entry table made by ToTensor's own division), so a
batch crosses to the GPU as a quarter of the bytes. Random transforms (FGVC's random resized crops, flips) are
not cached: their sets decode every epoch as before.

Memory: a set takes N x C x H x W bytes; at 224 px that is 150 KB an image: DTD's 1,880 test images 0.28 GB,
CIFAR-100's test split 1.5 GB, SVHN's 26,032 test images 3.9 GB (above the default 2 GB bound: disk).
"""
from __future__ import annotations

import fcntl
import hashlib
import logging
import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import PIL
import torch
import torchvision
from torch.utils.data import ConcatDataset, DataLoader, Dataset
from torchvision import transforms as T

from nvpt.data import ArrayImages
from nvpt.data.image_folder import ImageList
from nvpt.data.transforms import ToMode
from nvpt.errors import NVPTError
from nvpt.io import atomic_write

log = logging.getLogger("nvpt")

CACHE_VERSION = 1  # bump when the decoding or the file layout changes
# transform steps whose output depends on the image alone (no random draw)
DETERMINISTIC_STEPS = (ToMode, T.Resize, T.CenterCrop, T.Grayscale, T.ToTensor)
_BUILD_BATCH = 32
# float32 values of uint8 v under ToTensor (v.float().div(255)), made once on the CPU by the same operation
_UNIT = (torch.arange(256, dtype=torch.uint8).to(torch.float32).div(255)).tolist()


def unit_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 images -> the float32 [0,1] images ToTensor makes of them, bit for bit, on the images' device;
    float images pass through. A table lookup, not a division, because CUDA divides by a scalar through its
    reciprocal, which rounds some values differently from ToTensor's division on the CPU."""
    if images.dtype != torch.uint8:
        return images
    if images.device.type == "cpu":  # ToTensor's own operation
        return images.to(torch.float32).div(255)
    table = torch.tensor(_UNIT, dtype=torch.float32, device=images.device)
    return table[images.long()]


class CachedImages(Dataset):
    """(uint8 image [C,H,W], label) pairs from a decoded array [N,C,H,W] (in memory or a read-only memory map).

    A list of indices gives a whole batch in one read, (uint8 images [B,C,H,W], labels [B]): make_loader feeds
    it batches of indices (BatchSampler, batch_size=None), ten times faster than collating images one by one."""

    def __init__(self, images: np.ndarray, labels, path: Path | None = None):
        self.images, self.labels, self.path = images, np.asarray(labels, dtype=np.int64), path
        if len(self.images) != len(self.labels):
            raise NVPTError(f"data cache {path}: {len(self.images)} images but {len(self.labels)} labels; delete it")

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            return torch.from_numpy(np.array(self.images[index])), int(self.labels[index])
        index = np.asarray(index, dtype=np.int64)
        return torch.from_numpy(np.ascontiguousarray(self.images[index])), torch.from_numpy(self.labels[index])


def deterministic(dataset: Dataset) -> bool:
    """True when every image of `dataset` comes out of a transform without random steps (a VTAB resize, an FGVC
    evaluation crop): such a set can be decoded once. ConcatDataset: every part."""
    if isinstance(dataset, ConcatDataset):
        return all(deterministic(part) for part in dataset.datasets)
    transform = getattr(dataset, "transform", None)
    steps = getattr(transform, "transforms", None)
    return bool(steps) and isinstance(steps[-1], T.ToTensor) and all(isinstance(s, DETERMINISTIC_STEPS) for s in steps)


def describe(dataset: Dataset) -> tuple[str, np.ndarray] | None:
    """(a hash of everything that decides the set's pixels, its labels) without decoding an image; None for a set
    with no file list or source array to key it (the textures' crops)."""
    if isinstance(dataset, ConcatDataset):
        parts = [describe(part) for part in dataset.datasets]
        if any(p is None for p in parts):
            return None
        digest = hashlib.sha256("|".join(key for key, _ in parts).encode()).hexdigest()
        return digest, np.concatenate([labels for _, labels in parts])
    h = hashlib.sha256(f"nvpt-cache-{CACHE_VERSION}|Pillow {PIL.__version__}|torchvision {torchvision.__version__}|"
                       f"{getattr(dataset, 'transform', None)!r}|".encode())
    if isinstance(dataset, ImageList):
        for path, _ in dataset.samples:
            try:
                st = os.stat(path)
            except FileNotFoundError:
                raise NVPTError(f"image file not found: {path}; restore it or remove it from the data set") from None
            h.update(f"{os.path.abspath(path)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        return h.hexdigest(), np.asarray([label for _, label in dataset.samples], dtype=np.int64)
    if isinstance(dataset, ArrayImages):
        images = dataset.images[dataset.indices]
        h.update(f"{images.shape}{images.dtype}".encode())
        h.update(np.ascontiguousarray(images).data)
        return h.hexdigest(), dataset.labels[dataset.indices]
    return None


def cache_folder(cfg) -> Path:
    return Path(cfg.data.cache_dir) if cfg.data.cache_dir else Path(cfg.output_dir) / "data-cache"


def cached_dataset(dataset: Dataset, cfg, name: str | None = None) -> Dataset:
    """`dataset` decoded once under cfg.data.cache (a CachedImages yielding uint8 images), or `dataset` itself when
    its transform is random, the set is empty or data.cache=off. The uncached set is the one build_datasets made.
    `name` (default data.name) begins the cache file's name."""
    mode = cfg.data.cache
    if mode == "off" or len(dataset) == 0 or not deterministic(dataset):
        return dataset
    described = describe(dataset)
    bound = cfg.data.cache_memory_gb * 1e9
    if described is not None:
        key, labels = described
        path = cache_folder(cfg) / f"{name or cfg.data.name}-{len(dataset)}-{key[:24]}.npy"
        if path.is_file():  # decoded before, by this process or another: no image is opened
            return CachedImages(_open(path, len(dataset)), labels, path)
        if mode in ("auto", "disk"):
            images = _disk_cache(dataset, path, cfg.data.num_workers)
            return CachedImages(images, labels, path) if images is not None else dataset
        if key in _MEMORY and _MEMORY[key].nbytes <= bound:  # data.cache=memory: the same set, decoded by an earlier run in this process
            return CachedImages(_MEMORY[key], labels)
    shape = _shape(dataset)
    if np.prod(shape) > bound:
        if described is not None:  # too big for memory: the disk cache
            images = _disk_cache(dataset, path, cfg.data.num_workers, shape)
            return CachedImages(images, labels, path) if images is not None else dataset
        log.info(f"data cache: {shape[0]} images ({np.prod(shape) / 1e9:.1f} GB) exceed data.cache_memory_gb="
                 f"{cfg.data.cache_memory_gb} and have no file list to key a disk cache: decoded every epoch")
        return dataset
    images, decoded_labels = _decode(dataset, shape, np.empty(shape, dtype=np.uint8), cfg.data.num_workers)
    if images is None:
        return dataset
    if described is not None:
        _remember(described[0], images, bound)
    return CachedImages(images, decoded_labels)


def _shape(dataset: Dataset) -> tuple[int, ...]:
    """[N, C, H, W] of the set's transformed images (the first one decoded to see)."""
    return (len(dataset), *dataset[0][0].shape)


# sets kept in memory for later runs of this process (data.cache=memory), newest last, at most
# data.cache_memory_gb in all
_MEMORY: dict[str, np.ndarray] = {}


def _remember(key: str, images: np.ndarray, bound: float) -> None:
    _MEMORY[key] = images
    while sum(a.nbytes for a in _MEMORY.values()) > bound and len(_MEMORY) > 1:
        del _MEMORY[next(iter(_MEMORY))]


class _NotUint8(Exception):
    """The transform's output is not ToTensor of a uint8 image: the set cannot be kept as uint8 exactly."""


def _decode(dataset: Dataset, shape: tuple, out: np.ndarray, num_workers: int):
    """Fill `out` [N,C,H,W] uint8 with the set's images (decoded in `num_workers` processes, once) and return
    (out, labels); (None, None) when the transform does not end in ToTensor of a uint8 image."""
    table = torch.tensor(_UNIT, dtype=torch.float32)
    labels = np.empty(shape[0], dtype=np.int64)
    workers = min(num_workers, (shape[0] - 1) // _BUILD_BATCH)  # no processes for a set of one batch
    loader = DataLoader(dataset, batch_size=_BUILD_BATCH, shuffle=False, num_workers=workers)
    start = 0
    for images, batch_labels in loader:
        as_uint8 = images.mul(255).round_().clamp_(0, 255).to(torch.uint8)
        if images.dtype != torch.float32 or tuple(images.shape[1:]) != shape[1:] \
                or not torch.equal(table[as_uint8.long()], images):
            log.info("data cache: the transform's output is not ToTensor of a uint8 image: decoded every epoch")
            return None, None
        out[start:start + len(images)] = as_uint8.numpy()
        labels[start:start + len(images)] = batch_labels.numpy()
        start += len(images)
    return out, labels


@contextmanager
def _locked(lock_path: Path):
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _open(path: Path, count: int) -> np.ndarray:
    """The cache file's images, memory-mapped read-only (shared with every process that maps it)."""
    try:
        images = np.load(path, mmap_mode="r")
    except (OSError, ValueError) as exc:
        raise NVPTError(f"data cache {path} cannot be read ({type(exc).__name__}: {exc}); delete it") from None
    if images.ndim != 4 or len(images) != count or images.dtype != np.uint8:
        raise NVPTError(f"data cache {path} holds {images.dtype} {images.shape}, not {count} uint8 images; delete it")
    return images


def _disk_cache(dataset: Dataset, path: Path, num_workers: int, shape: tuple | None = None) -> np.ndarray | None:
    """The set's decoded images from `path`, decoding them into it first when no process has."""
    try:
        with _locked(path.with_name(path.name + ".lock")):
            if path.is_file():  # another process decoded it while this one waited
                return _open(path, len(dataset))
            shape = shape or _shape(dataset)
            log.info(f"data cache: decoding {shape[0]} images once into {path}")

            def write(tmp: Path) -> None:
                out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
                done, _ = _decode(dataset, shape, out, num_workers)
                out.flush()
                del out
                if done is None:
                    raise _NotUint8

            atomic_write(path, write)
    except _NotUint8:
        return None
    except OSError as exc:
        raise NVPTError(f"data cache: cannot write {path} ({type(exc).__name__}: {exc}); set data.cache_dir to a "
                        "writable folder with room for it, or data.cache=memory / off") from None
    return _open(path, len(dataset))
