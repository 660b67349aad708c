"""Datasets: every split yields (image, label) with image a float [C,H,W] tensor in [0,1], unnormalised.

Images stay in [0,1] because noise corruptions are defined on [0,1] images; the
engine normalises with `DataBundle.mean/std` on the device after corrupting.

    bundle = build_datasets(cfg, img_size=224, in_chans=3, default_mean=(0.5,)*3, default_std=(0.5,)*3)
"""
from __future__ import annotations

import gzip
import importlib
import tarfile
import urllib.error
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from nvpt.config import TORCHVISION_TASKS
from nvpt.errors import NVPTError, one_line

# cfg.data.name -> module with `build(cfg, img_size, in_chans) -> Splits`; imported on use
# so that e.g. the textures demo never imports torchvision's dataset zoo.
_BUILDERS = {
    "dtd": "nvpt.data.dtd",
    **{task: "nvpt.data.torchvision_tasks" for task in TORCHVISION_TASKS},
    "vtab": "nvpt.data.vtab",
    "fgvc": "nvpt.data.fgvc",
    "image_folder": "nvpt.data.image_folder",
    "textures": "nvpt.data.textures",
    "fashion_mnist": "nvpt.data.fashion_mnist",
    "synthetic": "nvpt.data.synthetic",
}


class Splits(NamedTuple):
    """What one dataset module builds; `build_datasets` adds the normalisation."""

    train: Dataset
    val: Dataset | None
    test: Dataset
    class_names: list[str]


@dataclass
class DataBundle:
    """Train/val/test datasets plus what the engine needs to normalise and size the head.

    mean/std: cfg.data.mean/std when set, else the backbone's timm pretrained config.
    Note that timm's ViT weights (e.g. vit_base_patch16_224.orig_in21k) use mean = std = 0.5
    while the original VPT code normalised with ImageNet statistics; set data.mean/std
    explicitly to reproduce the latter.
    """

    train: Dataset
    val: Dataset | None  # None when the protocol has no validation split
    test: Dataset
    num_classes: int
    class_names: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]


def build_datasets(cfg, img_size: int, in_chans: int, default_mean, default_std) -> DataBundle:
    """Build the data set named by cfg.data.name at `img_size` pixels with `in_chans` channels."""
    name = cfg.data.name
    if name not in _BUILDERS:
        raise NVPTError(f"unknown data.name {name!r}; use one of {', '.join(_BUILDERS)}")
    splits: Splits = importlib.import_module(_BUILDERS[name]).build(cfg, img_size, in_chans)
    explicit = cfg.data.mean is not None
    mean = _per_channel(cfg.data.mean if explicit else default_mean, in_chans, "data.mean" if explicit else "default mean")
    std = _per_channel(cfg.data.std if explicit else default_std, in_chans, "data.std" if explicit else "default std")
    return DataBundle(splits.train, splits.val, splits.test, len(splits.class_names), list(splits.class_names), mean, std)


def _per_channel(values: Sequence[float], in_chans: int, what: str) -> tuple[float, ...]:
    """One value per channel: a single value is broadcast; RGB statistics are averaged for a 1-channel model."""
    values = tuple(float(v) for v in values)
    if len(values) == in_chans:
        return values
    if len(values) == 1:
        return values * in_chans
    if in_chans == 1 and len(values) == 3:
        return (sum(values) / 3,)
    raise NVPTError(
        f"{what} has {len(values)} values but the model takes {in_chans} channels; give data.mean/data.std with {in_chans} values"
    )


def val_count(d) -> int:
    """Validation images per class of the generated sets (textures, synthetic): data.val_per_class, else a
    data.val_fraction share of data.train_per_class (at least 1); 0 when val_fraction is 0 (no validation split)."""
    if d.val_per_class is not None:
        return d.val_per_class
    return max(1, round(d.train_per_class * d.val_fraction)) if d.val_fraction > 0 else 0


def holdout_split(labels: Sequence[int], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Seeded per-class split of indices into (train, val): about `fraction` of each class goes to val.

    Every class with at least two items keeps at least one in each part; fraction 0 gives no val.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    val: list[int] = []
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        if fraction <= 0 or len(members) < 2:
            continue
        n_val = min(len(members) - 1, max(1, round(len(members) * fraction)))
        val.extend(members[:n_val].tolist())
    held = set(val)
    return [i for i in range(len(labels)) if i not in held], sorted(val)


class ArrayImages(Dataset):
    """(image, label) pairs from a uint8 array [N,H,W] (gray) or [N,H,W,3] (RGB), restricted to `indices`."""

    def __init__(self, images: np.ndarray, labels, indices, transform: Callable):
        self.images, self.labels = images, np.asarray(labels, dtype=np.int64)
        self.indices = np.asarray(indices, dtype=np.int64)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int):
        i = self.indices[index]
        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def torchvision_download(fetch: Callable, name: str, target, fallback: str):
    """Run a torchvision dataset download and return what `fetch` returns; a failure is one line
    that says which of no network, a file missing on the server, a download that fails its MD5
    checksum or an archive that does not unpack it was, and names `fallback`. Folders that the failed
    download created (`target` and its missing parents) are removed again while they are empty."""
    target = Path(target)
    created = [target, *target.parents]
    created = created[:next(i for i, folder in enumerate(created) if folder.exists())]  # the missing ones
    try:
        return _explained(fetch, name, target, fallback)
    except NVPTError:
        for folder in created:  # innermost first
            if not folder.is_dir() or any(folder.iterdir()):
                break
            folder.rmdir()
        raise


def _explained(fetch: Callable, name: str, target: Path, fallback: str):
    try:
        return fetch()
    except urllib.error.HTTPError as exc:  # before URLError, its parent class
        raise NVPTError(f"{name}: the server answered {exc.code} {exc.reason} for {exc.filename} (the file is missing "
                        f"there); {fallback}") from None
    except urllib.error.URLError as exc:
        raise NVPTError(f"{name}: cannot download into {target}: no connection ({one_line(exc.reason)}); {fallback}") from None
    except RuntimeError as exc:
        if "corrupted" in str(exc) or "md5" in str(exc).lower():  # torchvision: "File not found or corrupted."
            raise NVPTError(f"{name}: a file downloaded into {target} does not match its MD5 checksum (a truncated "
                            f"or altered download); run again to download it anew, or {fallback}") from None
        raise NVPTError(f"{name}: download into {target} failed ({one_line(exc)}); {fallback}") from None
    except (tarfile.TarError, zipfile.BadZipFile, gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise NVPTError(f"{name}: an archive downloaded into {target} does not unpack ({type(exc).__name__}: "
                        f"{one_line(exc)}); delete it and run again, or {fallback}") from None
    except OSError as exc:  # socket errors outside urllib, a full disk, ...
        raise NVPTError(f"{name}: download into {target} failed ({type(exc).__name__}: {one_line(exc)}); "
                        f"{fallback}") from None


