"""Offline demo data set: square crops of 20 CC0 texture photographs shipped with the package.

One class per photograph (nvpt/data/assets/textures/*.png, licences in LICENSE.md there).
Each photograph is cut into three horizontal bands, top third for training, middle third
for validation, bottom third for testing, so no test pixel is ever seen in training.
Crops of data.crop_size pixels sit at positions drawn from a generator seeded by
(seed, split, class): the same seed gives identical crops, another seed other crops.
data.root is ignored: the photographs are found next to this module.
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from nvpt.data import Splits, val_count
from nvpt.data.image_folder import load_image
from nvpt.data.transforms import vtab_transform
from nvpt.errors import NVPTError

ASSET_DIR = Path(__file__).resolve().parent / "assets" / "textures"
BANDS = ("train", "val", "test")  # top, middle and bottom third of every photograph


@functools.lru_cache(maxsize=2)
def load_photos(grayscale: bool) -> tuple[tuple[str, np.ndarray], ...]:
    """(class name, uint8 array HxW or HxWx3) per photograph, decoded once per colour mode."""
    files = sorted(ASSET_DIR.glob("*.png"))
    if not files:
        raise NVPTError(f"textures: no PNG photographs found in {ASSET_DIR}; the nvpt installation is incomplete, reinstall it")
    mode = "L" if grayscale else "RGB"
    return tuple((path.stem, np.asarray(load_image(path).convert(mode))) for path in files)


def band_rows(height: int, split: str) -> tuple[int, int]:
    """[first, end) rows of the band that `split` crops come from."""
    i = BANDS.index(split)
    return height * i // 3, height * (i + 1) // 3


def largest_crop(photos) -> int:
    """The largest crop side that fits inside every band of every photograph."""
    sides = []
    for _, array in photos:
        heights = [end - first for first, end in (band_rows(array.shape[0], split) for split in BANDS)]
        sides.append(min(*heights, array.shape[1]))
    return min(sides)


class TextureCrops(Dataset):
    """`per_class` crops per photograph from the band of `split`; crop boxes are in `self.boxes`."""

    def __init__(self, photos, split: str, per_class: int, crop_size: int, seed: int, transform):
        self.arrays = [array for _, array in photos]
        self.crop_size = crop_size
        self.transform = transform
        self.boxes: list[tuple[int, int, int]] = []  # (label, top row, left column)
        for label, array in enumerate(self.arrays):
            first, end = band_rows(array.shape[0], split)
            rng = np.random.default_rng([seed, BANDS.index(split), label])
            tops = rng.integers(first, end - crop_size + 1, size=per_class)
            lefts = rng.integers(0, array.shape[1] - crop_size + 1, size=per_class)
            self.boxes.extend((label, int(t), int(x)) for t, x in zip(tops, lefts, strict=True))

    def __len__(self) -> int:
        return len(self.boxes)

    def __getitem__(self, index: int):
        label, top, left = self.boxes[index]
        crop = self.arrays[label][top : top + self.crop_size, left : left + self.crop_size]
        return self.transform(Image.fromarray(np.ascontiguousarray(crop))), label


def build(cfg, img_size: int, in_chans: int) -> Splits:
    d = cfg.data
    photos = load_photos(d.grayscale)
    fits = largest_crop(photos)
    if d.crop_size > fits:
        raise NVPTError(f"textures: data.crop_size={d.crop_size} does not fit the photographs' bands; use data.crop_size <= {fits}")
    train_tf = vtab_transform(img_size, in_chans, flip=d.transform == "fgvc")
    eval_tf = vtab_transform(img_size, in_chans)

    def crops(split: str, per_class: int, transform) -> TextureCrops:
        return TextureCrops(photos, split, per_class, d.crop_size, cfg.seed, transform)

    n_val = val_count(d)
    val = crops("val", n_val, eval_tf) if n_val else None
    names = [name for name, _ in photos]
    return Splits(crops("train", d.train_per_class, train_tf), val, crops("test", d.test_per_class, eval_tf), names)
