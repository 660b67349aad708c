"""The 5 FGVC data sets in the VPT reference's split format (data.name=fgvc, data.task=<name>).

<root>/<folder>/{train,val,test}.json, each a JSON object mapping an image path to its class id,
the path relative to the data set's image folder, as the VPT reference's JSONDataset reads them:

    data.task       folder (under data.root)  image folder       classes   train / val / test (VPT's splits)
    cub             CUB_200_2011/             images/            200       5,394 / 600 / 5,794
    nabirds         nabirds/                  images/            555       21,536 / 2,393 / 24,633
    oxford_flowers  OxfordFlower/             (the folder)       102       1,020 / 1,020 / 6,149
    stanford_dogs   Stanford-dogs/            Images/            120       10,800 / 1,200 / 8,580
    stanford_cars   Stanford-cars/            (the folder)       196       7,329 / 815 / 8,041

Class ids may be any integers (CUB's run 1..200, NABirds' are sparse): they are numbered 0.. in sorted
order, as the reference does. data.protocol=tune trains on train.json and validates on val.json;
final trains on train.json (the reference's final FGVC runs train on it alone; val.json only chose
the hyper-parameters), no validation; both test on test.json.

Without the JSON files and with data.download=true, Oxford Flowers is downloaded through torchvision
(its official train / val / test sets are the reference's splits) and Stanford Cars is read from
torchvision's StanfordCars layout when its files are there (stanford_cars/devkit, cars_train,
cars_test, cars_test_annos_withlabels.mat; torchvision cannot download them any more): the JSON files
are written once next to the images, and from then on read like any other. Cars' val.json is a
seeded 10 % per class of the official training set (data.split_seed), not the reference's own draw.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from nvpt.data import Splits, holdout_split
from nvpt.data.image_folder import ImageList, check_files_exist
from nvpt.data.transforms import build_transform
from nvpt.errors import NVPTError, one_line
from nvpt.suites import FGVC

SPLITS = ("train", "val", "test")


def read_split(path: Path, images: Path) -> list[tuple[Path, int]]:
    """(absolute path, raw class id) of one split file: a JSON object {relative image path: class id}."""
    if not path.is_file():
        raise NVPTError(f"fgvc: split file {path} not found; the data set folder needs train.json, val.json and "
                        "test.json in the VPT reference's format (see docs/datasets.md)")
    try:
        anno = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise NVPTError(f"fgvc: {path} is not valid JSON ({one_line(exc)}); restore the split file") from None
    if not isinstance(anno, dict) or not anno:
        raise NVPTError(f"fgvc: {path} must be a non-empty JSON object {{\"relative/image.jpg\": class id, ...}}")
    samples = []
    for name, label in anno.items():
        if isinstance(label, str) and label.strip().lstrip("-").isdigit():
            label = int(label)
        if not isinstance(label, int) or isinstance(label, bool):
            raise NVPTError(f"fgvc: {path} gives {name!r} the class {label!r}; class ids must be integers")
        samples.append((images / name, label))
    check_files_exist([p for p, _ in samples], path)
    return samples


def _write_splits(folder: Path, images: Path, splits: dict[str, list[tuple[Path, int]]]) -> None:
    """train/val/test.json with paths relative to `images`; test.json last, each written whole (a temporary
    file renamed), so a stopped export leaves no split file that looks complete without the others."""
    for name in SPLITS:
        anno = {Path(p).relative_to(images).as_posix(): int(label) for p, label in splits[name]}
        tmp = folder / f".{name}.json.tmp"
        tmp.write_text(json.dumps(anno, indent=0) + "\n")
        tmp.replace(folder / f"{name}.json")


def _export_flowers(folder: Path, download: bool) -> None:
    from nvpt.data.torchvision_tasks import _flowers102

    train, val, test, _ = _flowers102(folder, download)
    _write_splits(folder, folder, {name: list(zip(src.paths, src.labels.tolist()))
                                   for name, src in zip(SPLITS, (train, val, test))})


def _export_cars(folder: Path, seed: int) -> None:
    from torchvision.datasets import StanfordCars

    base = folder / "stanford_cars"
    try:
        parsed = {split: StanfordCars(folder, split=split)._samples for split in ("train", "test")}
    except RuntimeError:
        raise NVPTError(f"stanford_cars: no train.json/val.json/test.json in {folder} and no torchvision StanfordCars "
                        f"files in {base} (torchvision cannot download them any more); place the data set as "
                        "docs/datasets.md says") from None
    except Exception as exc:  # a truncated .mat, ...
        raise NVPTError(f"stanford_cars: cannot read the files in {base} ({type(exc).__name__}: {one_line(exc)}); "
                        "restore them") from None
    train_all = [(Path(p), int(label)) for p, label in parsed["train"]]
    keep, held = holdout_split([label for _, label in train_all], 0.1, seed)
    _write_splits(folder, folder, {"train": [train_all[i] for i in keep], "val": [train_all[i] for i in held],
                                   "test": [(Path(p), int(label)) for p, label in parsed["test"]]})


def ensure_splits(cfg) -> Path:
    """The data set's folder, its JSON split files written first where data.download allows it."""
    task = cfg.data.task
    if task not in FGVC:
        raise NVPTError(f"fgvc: unknown data.task {task!r}; use one of {', '.join(FGVC)}")
    folder = Path(cfg.data.root) / FGVC[task].folder
    if all((folder / f"{s}.json").is_file() for s in SPLITS) or not cfg.data.download:
        return folder
    if task == "oxford_flowers":
        _export_flowers(folder, True)
    elif task == "stanford_cars":
        _export_cars(folder, cfg.data.split_seed)
    else:
        raise NVPTError(f"{task}: torchvision cannot download {FGVC[task].title}; fetch it and the VPT reference's "
                        f"split files into {folder} as docs/datasets.md says")
    return folder


def build(cfg, img_size: int, in_chans: int) -> Splits:
    folder = ensure_splits(cfg)
    info = FGVC[cfg.data.task]
    if not folder.is_dir():
        raise NVPTError(f"fgvc: data set folder {folder} not found; put {info.title} there with its train.json, "
                        f"val.json and test.json (docs/datasets.md), or data.download=true where torchvision has it")
    images = folder / info.images if info.images else folder
    names = ("train", "val", "test") if cfg.data.protocol == "tune" else ("train", None, "test")
    raw = {name: read_split(folder / f"{name}.json", images) for name in names if name}
    ids = sorted({label for _, label in raw["train"]})
    index = {label: i for i, label in enumerate(ids)}
    for name, samples in raw.items():
        unknown = sorted({label for _, label in samples if label not in index})
        if unknown:
            raise NVPTError(f"fgvc: {folder / f'{name}.json'} uses class ids {unknown[:5]} that train.json never does; "
                            "restore the split files")
    lists = {name: [(p, index[label]) for p, label in samples] for name, samples in raw.items()}
    train_tf = build_transform(cfg.data.transform, img_size, in_chans, train=True)
    eval_tf = build_transform(cfg.data.transform, img_size, in_chans, train=False)
    val = ImageList(lists["val"], eval_tf) if "val" in lists else None
    classes = [f"class_{i}" for i in np.asarray(ids).tolist()]
    return Splits(ImageList(lists["train"], train_tf), val, ImageList(lists["test"], eval_tf), classes)
