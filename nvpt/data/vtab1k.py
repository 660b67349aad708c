"""The VTAB-1k protocol on a task's official splits: 800 + 200 labelled images, drawn once.

VTAB-1k (Zhai et al. 2019) trains every task on 1,000 labelled images: 800 "train" and 200 "val"
images, taken from the official training split (and from the official validation split where the
task has one), and tests on the official test split. The released lists hold the first 800 / 200
images in TensorFlow Datasets' stored order; this module draws sets of the same sizes from the same
splits with `numpy.random.default_rng(data.split_seed)`, so every training seed and method sees
the same 1,000 images (data.split_seed=0 by default):

    official validation split (dtd, oxford_flowers102): 800 drawn from train, 200 from val
    no validation split (cifar100, caltech101, oxford_iiit_pet, svhn): 1,000 drawn from train,
        the first 800 of the draw train, the last 200 validate
    data.protocol=tune:  train on the 800, validate on the 200, test on the official test split
    data.protocol=final: train on all 1,000, no validation, test on the official test split

data.vtab1k=false uses the full official splits instead: train / val (final: train + val); a
task without an official validation split holds out a seeded data.val_fraction share of its
training split (final: none).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch.utils.data import ConcatDataset, Dataset

from nvpt.data import ArrayImages, Splits, holdout_split
from nvpt.data.image_folder import ImageList, check_files_exist
from nvpt.data.transforms import build_transform
from nvpt.errors import NVPTError

TRAIN_SIZE, VAL_SIZE = 800, 200


@dataclass
class Source:
    """One official split: its labels and how to make a transformed dataset of some of its images.

    Either `paths` (image files, decoded with the checked loader) or `images` (a uint8 array
    [N,H,W] or [N,H,W,3]) holds the images."""

    labels: np.ndarray
    paths: Sequence[Path] | None = None
    images: np.ndarray | None = None

    def __post_init__(self):
        self.labels = np.asarray(self.labels, dtype=np.int64)
        count = len(self.paths) if self.paths is not None else len(self.images)
        if count != len(self.labels):
            raise NVPTError(f"{count} images but {len(self.labels)} labels in one split; re-extract the data set")

    def __len__(self) -> int:
        return len(self.labels)

    def check_files(self, list_file) -> None:
        if self.paths is not None:
            check_files_exist(self.paths, list_file)

    def subset(self, indices, transform: Callable) -> Dataset:
        indices = np.asarray(indices, dtype=np.int64)
        if self.paths is not None:
            return ImageList([(Path(self.paths[i]), int(self.labels[i])) for i in indices], transform)
        return ArrayImages(self.images, self.labels, indices, transform)


def draw(cfg, task: str, train: Source, val: Source | None) -> tuple[tuple[Source, np.ndarray], tuple[Source, np.ndarray]]:
    """(source, indices) of the training and the validation images under cfg.data.vtab1k."""
    if not cfg.data.vtab1k:
        if val is not None:
            return (train, np.arange(len(train))), (val, np.arange(len(val)))
        keep, held = holdout_split(train.labels, cfg.data.val_fraction, cfg.data.split_seed)
        return (train, np.asarray(keep)), (train, np.asarray(held, dtype=np.int64))
    rng = np.random.default_rng(cfg.data.split_seed)
    if val is None:
        _need(task, "training split", len(train), TRAIN_SIZE + VAL_SIZE)
        order = rng.permutation(len(train))[: TRAIN_SIZE + VAL_SIZE]
        return (train, np.sort(order[:TRAIN_SIZE])), (train, np.sort(order[TRAIN_SIZE:]))
    _need(task, "training split", len(train), TRAIN_SIZE)
    _need(task, "validation split", len(val), VAL_SIZE)
    picked_train = np.sort(rng.permutation(len(train))[:TRAIN_SIZE])
    picked_val = np.sort(rng.permutation(len(val))[:VAL_SIZE])
    return (train, picked_train), (val, picked_val)


def _need(task: str, split: str, have: int, want: int) -> None:
    if have < want:
        raise NVPTError(f"{task}: the VTAB-1k protocol draws {want} images from the official {split}, which holds "
                        f"only {have}; use the complete data set, or data.vtab1k=false for the full official splits")


def protocol_splits(cfg, task: str, train: Source, val: Source | None, test: Source, class_names: Sequence[str],
                    img_size: int, in_chans: int) -> Splits:
    """Train / val / test datasets of a task under cfg.data.vtab1k and cfg.data.protocol."""
    labels = np.concatenate([s.labels for s in (train, val, test) if s is not None])
    if labels.size and (labels.min() < 0 or labels.max() >= len(class_names)):
        raise NVPTError(f"{task}: labels run from {labels.min()} to {labels.max()} but there are {len(class_names)} "
                        "classes; re-extract the data set")
    train_tf = build_transform(cfg.data.transform, img_size, in_chans, train=True)
    eval_tf = build_transform(cfg.data.transform, img_size, in_chans, train=False)
    (train_src, train_idx), (val_src, val_idx) = draw(cfg, task, train, val)
    test_set = test.subset(np.arange(len(test)), eval_tf)
    if cfg.data.protocol == "final":  # train on both parts; the validation images get the training transform
        parts = [train_src.subset(train_idx, train_tf)]
        if len(val_idx):
            parts.append(val_src.subset(val_idx, train_tf))
        return Splits(parts[0] if len(parts) == 1 else ConcatDataset(parts), None, test_set, list(class_names))
    val_set = val_src.subset(val_idx, eval_tf) if len(val_idx) else None
    return Splits(train_src.subset(train_idx, train_tf), val_set, test_set, list(class_names))
