"""The VTAB-1k natural tasks that torchvision downloads: CIFAR-100, Caltech-101, Oxford Flowers-102,
Oxford-IIIT Pet and SVHN, in torchvision's own layouts under data.root.

Every task runs the VTAB-1k protocol of nvpt/data/vtab1k.py on its official splits:

    data.name          torchvision folder under data.root        train split (val split)    test split
    cifar100           cifar-100-python/                         train (50,000)             test (10,000)
    caltech101         caltech101/101_ObjectCategories/          30 per class (3,060)       the rest (6,084)
    oxford_flowers102  flowers-102/ (jpg/, imagelabels.mat, ...) train (1,020), val (1,020) test (6,149)
    oxford_iiit_pet    oxford-iiit-pet/ (images/, annotations/)  trainval (3,680)           test (3,669)
    svhn               svhn/{train,test}_32x32.mat               train (73,257)             test (26,032)

torchvision checks the MD5 of CIFAR-100's, Flowers-102's and SVHN's files when it opens them (so
CIFAR-100's pickled batches are unpickled only when they are the official files). Caltech-101 has no
official split: like TensorFlow Datasets, which VTAB reads, we keep 30 images per class for training
and test on the rest, the 30 drawn per class with data.split_seed; like TFDS and VTAB (102 classes)
the BACKGROUND_Google folder is a class, which torchvision's Caltech101 class leaves out.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torchvision import datasets as tvd

from nvpt.data import Splits, torchvision_download
from nvpt.data.image_folder import class_folders, image_files
from nvpt.data.vtab1k import Source, protocol_splits
from nvpt.errors import NVPTError, one_line

CALTECH_TRAIN_PER_CLASS = 30


@dataclass(frozen=True)
class Task:
    folder: str  # where torchvision keeps the files, under data.root
    test_size: int  # images in the official test split


TASKS = {
    "cifar100": Task("cifar-100-python", 10000),
    "caltech101": Task("caltech101", 6084),
    "oxford_flowers102": Task("flowers-102", 6149),
    "oxford_iiit_pet": Task("oxford-iiit-pet", 3669),
    "svhn": Task("svhn", 26032),
}


def _open(task: str, where: Path, factory: Callable, download: bool):
    """factory(download) -> a torchvision dataset; every failure is one line naming `where`."""
    fallback = (f"on a machine without internet place the official files in torchvision's layout at {where} "
                "(see docs/datasets.md)")
    try:
        if download:
            return torchvision_download(lambda: factory(True), task, where, fallback)
        return factory(False)
    except RuntimeError:  # torchvision: "Dataset not found or corrupted. You can use download=True ..."
        raise NVPTError(f"{task}: dataset not found or corrupted in {where} (torchvision checks the files and their "
                        f"MD5 sums); pass data.download=true on a machine with internet, or {fallback}") from None
    except NVPTError:
        raise
    except Exception as exc:  # a truncated .mat, a malformed annotation line, ...
        raise NVPTError(f"{task}: cannot read the files in {where} ({type(exc).__name__}: {one_line(exc)}); delete them and "
                        "download again (data.download=true)") from None


def _files(task: str, paths, labels, listed_in: Path) -> Source:
    """Image files named by `listed_in` (checked to exist before training starts)."""
    source = Source(labels, paths=[Path(p) for p in paths])
    if not len(source):
        raise NVPTError(f"{task}: {listed_in} lists no images; re-extract the official files")
    source.check_files(listed_in)
    return source


def _cifar100(root: Path, download: bool):
    where = root / TASKS["cifar100"].folder
    split = {name: _open("cifar100", where, lambda dl, train=train: tvd.CIFAR100(root, train=train, download=dl), download)
             for name, train in (("train", True), ("test", False))}
    sources = {name: Source(ds.targets, images=ds.data) for name, ds in split.items()}
    return sources["train"], None, sources["test"], list(split["train"].classes)


def _svhn(root: Path, download: bool):
    where = root / TASKS["svhn"].folder
    sources = {}
    for name in ("train", "test"):
        ds = _open("svhn", where, lambda dl, name=name: tvd.SVHN(where, split=name, download=dl), download)
        sources[name] = Source(ds.labels, images=np.ascontiguousarray(ds.data.transpose(0, 2, 3, 1)))  # CHW -> HWC
    return sources["train"], None, sources["test"], [str(d) for d in range(10)]


def _flowers102(root: Path, download: bool):
    where = root / TASKS["oxford_flowers102"].folder
    split = {name: _open("oxford_flowers102", where, lambda dl, name=name: tvd.Flowers102(root, split=name, download=dl),
                         download) for name in ("train", "val", "test")}
    sources = {name: _files("oxford_flowers102", ds._image_files, ds._labels, where / "setid.mat")
               for name, ds in split.items()}
    return sources["train"], sources["val"], sources["test"], list(tvd.Flowers102.classes)


def _pets(root: Path, download: bool):
    where = root / TASKS["oxford_iiit_pet"].folder
    split = {name: _open("oxford_iiit_pet", where, lambda dl, name=name: tvd.OxfordIIITPet(root, split=name, download=dl),
                         download) for name in ("trainval", "test")}
    sources = {name: _files("oxford_iiit_pet", ds._images, ds._labels, where / "annotations" / f"{name}.txt")
               for name, ds in split.items()}
    return sources["trainval"], None, sources["test"], list(split["trainval"].classes)


def _caltech101(root: Path, download: bool, seed: int):
    where = root / TASKS["caltech101"].folder / "101_ObjectCategories"
    if download and not where.is_dir():
        _open("caltech101", where.parent, lambda dl: tvd.Caltech101(root, download=dl), True)
    if not where.is_dir():
        raise NVPTError(f"caltech101: dataset not found, looked in {where}; pass data.download=true on a machine with "
                        "internet, or extract the official caltech-101 archive there (see docs/datasets.md)")
    classes = class_folders(where)
    rng = np.random.default_rng(seed)
    parts: dict[str, tuple[list[Path], list[int]]] = {"train": ([], []), "test": ([], [])}
    for label, name in enumerate(classes):
        images = image_files(where / name)
        if len(images) <= CALTECH_TRAIN_PER_CLASS:
            raise NVPTError(f"caltech101: {where / name} holds {len(images)} images; every class needs more than "
                            f"{CALTECH_TRAIN_PER_CLASS} (that many train, the rest test): re-extract the official archive")
        chosen = set(rng.permutation(len(images))[:CALTECH_TRAIN_PER_CLASS].tolist())
        for i, path in enumerate(images):
            paths, labels = parts["train" if i in chosen else "test"]
            paths.append(path)
            labels.append(label)
    sources = {name: Source(labels, paths=paths) for name, (paths, labels) in parts.items()}
    return sources["train"], None, sources["test"], classes


def build(cfg, img_size: int, in_chans: int) -> Splits:
    name, root, download = cfg.data.name, Path(cfg.data.root), cfg.data.download
    if name == "caltech101":
        train, val, test, classes = _caltech101(root, download, cfg.data.split_seed)
    else:
        train, val, test, classes = {"cifar100": _cifar100, "svhn": _svhn, "oxford_flowers102": _flowers102,
                                     "oxford_iiit_pet": _pets}[name](root, download)
    return protocol_splits(cfg, name, train, val, test, classes, img_size, in_chans)
