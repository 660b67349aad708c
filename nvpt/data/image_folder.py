"""Image files on disk: a checked loader, a (path, label) list dataset, and the class-folder layout.

Layout: <root>/train/<class>/*, <root>/test/<class>/*, optional <root>/val/<class>/*.
Without a val folder, val is a seeded data.val_fraction split of train (None when 0).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from PIL import Image
from torch.utils.data import Dataset

from nvpt.data import Splits, holdout_split
from nvpt.data.transforms import build_transform
from nvpt.errors import NVPTError, one_line

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


_FAILURES = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


def _unreadable(path, exc: BaseException) -> NVPTError:
    if isinstance(exc, FileNotFoundError):
        return NVPTError(f"image file not found: {path}; restore it or remove it from the data set")
    return NVPTError(f"cannot read image {path} ({type(exc).__name__}: {one_line(exc)}); replace or delete the file")


def load_image(path: str | Path) -> Image.Image:
    """Decode an image fully, turning I/O and format failures into an NVPTError naming the file."""
    try:
        with open(path, "rb") as f:
            image = Image.open(f)
            image.load()  # decode now, while the file is open, so truncation surfaces here
    except _FAILURES as exc:
        raise _unreadable(path, exc) from None
    return image


def _ends_with_eoi(handle) -> bool:
    """Whether a JPEG file ends with its end-of-image marker (trailing zero padding allowed)."""
    size = handle.seek(0, 2)
    handle.seek(max(0, size - 64))
    return handle.read().rstrip(b"\x00").endswith(b"\xff\xd9")


def verify_image(path: str | Path) -> None:
    """Check without decoding the pixels that load_image will read `path` (NVPTError naming the file if not).

    PIL parses the header and verify() checks the file's structure: for PNG every chunk's CRC up to IEND,
    which finds a truncated file. A JPEG passes verify() truncated, so one without its end marker is
    decoded in full; other formats are decoded in full."""
    try:
        with open(path, "rb") as f:
            with Image.open(f) as image:
                kind = image.format
                image.verify()
            if kind == "PNG" or (kind == "JPEG" and _ends_with_eoi(f)):
                return
            f.seek(0)
            with Image.open(f) as image:
                image.load()
    except _FAILURES as exc:
        raise _unreadable(path, exc) from None


def verify_images(paths: Sequence[str | Path]) -> None:
    """verify_image on every path, each file once: done while a data set is built, so an unreadable image
    fails before training starts and before a run folder exists."""
    for path in dict.fromkeys(paths):
        verify_image(path)


def check_files_exist(paths: Sequence[Path], list_file: str | Path) -> None:
    """Fail before training when a list file names an image that is not there."""
    for path in paths:
        if not Path(path).is_file():
            raise NVPTError(f"{list_file} names {path}, which does not exist; restore the image or remove its line")


class ImageList(Dataset):
    """(image, label) pairs from a list of (path, label) samples."""

    def __init__(self, samples: Sequence[tuple[Path, int]], transform: Callable):
        self.samples = list(samples)
        self.transform = transform
        verify_images([path for path, _ in self.samples])  # every image readable before any training

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        path, label = self.samples[index]
        return self.transform(load_image(path)), label


def class_folders(folder: Path) -> list[str]:
    """Sorted names of the non-hidden sub-folders of `folder` (one class each)."""
    return sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))


def image_files(folder: Path) -> list[Path]:
    """Sorted non-hidden files of `folder` with an image suffix (IMAGE_SUFFIXES, any case)."""
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES)


def _scan(split_dir: Path) -> tuple[list[str], list[tuple[Path, str]]]:
    """Class names (sorted sub-folders) and (file, class) pairs of one split folder."""
    classes = class_folders(split_dir)
    if not classes:
        raise NVPTError(f"image_folder: {split_dir} has no class sub-folders; expected {split_dir}/<class>/<image>")
    files = []
    for name in classes:
        images = image_files(split_dir / name)
        if not images:
            raise NVPTError(f"image_folder: class folder {split_dir / name} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        files.extend((p, name) for p in images)
    return classes, files


def build(cfg, img_size: int, in_chans: int) -> Splits:
    root = Path(cfg.data.root)
    found = {}
    for split in ("train", "val", "test"):
        split_dir = root / split
        if split_dir.is_dir():
            found[split] = _scan(split_dir)
        elif split != "val":
            raise NVPTError(
                f"image_folder: {split_dir} not found; data.root must hold train/<class>/* and test/<class>/* (optional val/<class>/*)"
            )
    classes = found["train"][0]
    for split, (names, _) in found.items():
        if names != classes:
            differ = sorted(set(names) ^ set(classes))
            raise NVPTError(
                f"image_folder: {root / split} and {root / 'train'} must have the same class folders; they differ in: {', '.join(differ)}"
            )
    index = {name: i for i, name in enumerate(classes)}
    samples = {split: [(p, index[name]) for p, name in files] for split, (_, files) in found.items()}

    train_tf = build_transform(cfg.data.transform, img_size, in_chans, train=True)
    eval_tf = build_transform(cfg.data.transform, img_size, in_chans, train=False)
    train_samples, val_samples = samples["train"], samples.get("val")
    if val_samples is None and cfg.data.val_fraction > 0:
        keep, held = holdout_split([label for _, label in train_samples], cfg.data.val_fraction, cfg.seed)
        train_samples, val_samples = [train_samples[i] for i in keep], [train_samples[i] for i in held]
    val = ImageList(val_samples, eval_tf) if val_samples else None
    return Splits(ImageList(train_samples, train_tf), val, ImageList(samples["test"], eval_tf), classes)
