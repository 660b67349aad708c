"""VTAB-1k task folders built from torchvision's downloads (data.name=vtab with data.download=true).

For the tasks whose source torchvision downloads, `export(cfg)` fetches it into <data.root>/torchvision/
(torchvision's own layout), forms the task's train / val / test splits, draws VTAB-1k's 800 + 200
images from them with data.split_seed (nvpt/data/vtab1k.py) and writes the get_vtab1k.py lists into
<data.root>/<task>/: train800.txt, val200.txt, train800val200.txt and test.txt, each line
`<path relative to the task folder> <label>` (the images stay where torchvision put them). From then
on the folder is read like the released export.

    task                source (torchvision)            train / val / test before the 800 + 200 draw
    caltech101          Caltech101                      30 per class / - / the rest (as data.name=caltech101)
    dtd                 DTD partition data.partition    train / val / test lists
    oxford_flowers102   Flowers102                      train / val / test
    oxford_iiit_pet     OxfordIIITPet                   trainval / - / test
    sun397              SUN397 (108,754 images)         a seeded 70 / 10 / 20 % split of all images
    eurosat             EuroSAT RGB (27,000 images)     a seeded 60 / 20 / 20 % split of all images
    clevr_count         CLEVRClassification's files     90 / 10 % of the official train / the official val
    clevr_dist          (CLEVR_v1.0 and its scenes)     (15,000); labels from the scene files
    kitti               Kitti (object, 7,481 labelled)  a seeded image-level split, 6,347 / 423 / 711 images

VTAB's splits come from TensorFlow Datasets' stored order and slices; these are seeded draws of the
same sizes from the same official data, so the images differ while the protocol is the same.
docs/datasets.md says exactly where each differs (KITTI: VTAB splits by drive, not by image).
Labels follow VTAB's task definitions (google-research/task_adaptation):
    clevr_count   number of objects - 3 (3..10 objects: 8 classes)
    clevr_dist    depth of the closest object (pixel_coords[2]) binned at 8, 8.5, 9, 9.5, 10 (6 classes)
    kitti         depth of the closest Car, Van or Truck binned at 8 and 20 m; class 3: no vehicle (4 classes)
CIFAR-100 and SVHN, held as arrays by torchvision, keep their own path: data.name=cifar100 / svhn.
"""
from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import numpy as np

from nvpt.data.torchvision_tasks import _caltech101, _flowers102, _open, _pets
from nvpt.data.vtab1k import Source, draw
from nvpt.errors import NVPTError, one_line

FOLDER = "torchvision"  # torchvision's downloads, under data.root
CLEVR_DIST_THRESHOLDS = (0.0, 8.0, 8.5, 9.0, 9.5, 10.0, 100.0)
KITTI_THRESHOLDS = (-100.0, 8.0, 20.0, 999.0)
KITTI_VEHICLES = ("Car", "Van", "Truck")
KITTI_SPLIT = (6347, 423, 711)  # TFDS kitti train / validation / test, 7,481 images in all


def clevr_dist_label(depths) -> int:
    """VTAB's closest_object_distance: the largest threshold below the closest object's depth."""
    dist = min(depths)
    return int(max(i for i, t in enumerate(CLEVR_DIST_THRESHOLDS) if t - dist < 0))


def kitti_label(objects: list[tuple[str, float]]) -> int:
    """VTAB's closest_vehicle_distance from (type, depth z in metres) of an image's objects; 3: no vehicle."""
    dist = min([z for kind, z in objects if kind in KITTI_VEHICLES] + [1000.0])
    return int(max(i for i, t in enumerate(KITTI_THRESHOLDS) if t - dist < 0))


def _shares(n: int, sizes: tuple[int, ...], seed: int) -> list[np.ndarray]:
    """A seeded permutation of range(n) cut into parts of the given relative sizes (the last takes the rest)."""
    order = np.random.default_rng(seed).permutation(n)
    total = sum(sizes)
    cuts = np.cumsum([round(n * s / total) for s in sizes[:-1]])
    return [np.sort(part) for part in np.split(order, cuts)]


def _parts(source: Source, parts: list[np.ndarray]) -> list[Source]:
    return [Source(source.labels[p], paths=[source.paths[i] for i in p]) for p in parts]


def _eurosat(root: Path, download: bool, seed: int):
    from torchvision.datasets import EuroSAT

    ds = _open("eurosat", root / "eurosat", lambda dl: EuroSAT(root, download=dl), download)
    everything = Source([label for _, label in ds.samples], paths=[Path(p) for p, _ in ds.samples])
    return _parts(everything, _shares(len(everything), (60, 20, 20), seed))


def _sun397(root: Path, download: bool, seed: int):
    from torchvision.datasets import SUN397

    ds = _open("sun397", root / "SUN397", lambda dl: SUN397(root, download=dl), download)
    order = np.argsort([str(p) for p in ds._image_files])  # rglob's order depends on the file system
    everything = Source(np.asarray(ds._labels)[order], paths=[ds._image_files[i] for i in order])
    return _parts(everything, _shares(len(everything), (70, 10, 20), seed))


def _clevr(task: str, root: Path, download: bool, seed: int):
    from torchvision.datasets import CLEVRClassification

    where = root / "clevr" / "CLEVR_v1.0"
    _open(task, where, lambda dl: CLEVRClassification(root, split="val", download=dl), download)
    official = {}
    for split in ("train", "val"):
        scenes_file = where / "scenes" / f"CLEVR_{split}_scenes.json"
        try:
            scenes = json.loads(scenes_file.read_text())["scenes"]
            labels = [len(s["objects"]) - 3 if task == "clevr_count"
                      else clevr_dist_label([o["pixel_coords"][2] for o in s["objects"]]) for s in scenes]
            paths = [where / "images" / split / s["image_filename"] for s in scenes]
        except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
            raise NVPTError(f"{task}: cannot read {scenes_file} ({type(exc).__name__}: {one_line(exc)}); re-extract "
                            "CLEVR_v1.0.zip") from None
        if labels and not 0 <= min(labels) <= max(labels) < (8 if task == "clevr_count" else 6):
            raise NVPTError(f"{task}: {scenes_file} has a scene outside VTAB's classes (3..10 objects); re-extract it")
        official[split] = Source(labels, paths=paths)
    train, val = _parts(official["train"], _shares(len(official["train"]), (90, 10), seed))
    return train, val, official["val"]


def _kitti(root: Path, download: bool, seed: int):
    from torchvision.datasets import Kitti

    where = root / "Kitti" / "raw" / "training"
    ds = _open("kitti", where, lambda dl: Kitti(root, train=True, download=dl), download)
    images = sorted(Path(p) for p in ds.images)
    labels = []
    for image in images:
        label_file = where / "label_2" / f"{image.stem}.txt"
        try:
            rows = [line.split() for line in label_file.read_text().splitlines() if line.strip()]
            labels.append(kitti_label([(row[0], float(row[13])) for row in rows]))
        except (OSError, ValueError, IndexError) as exc:
            raise NVPTError(f"kitti: cannot read {label_file} ({type(exc).__name__}: {one_line(exc)}); re-extract "
                            "data_object_label_2.zip") from None
    return _parts(Source(labels, paths=images), _shares(len(images), KITTI_SPLIT, seed))


def official(task: str, cfg, root: Path) -> tuple[Source, Source | None, Source]:
    """The task's train / val / test sources from torchvision's files under `root` (downloaded when data.download)."""
    download, seed = cfg.data.download, cfg.data.split_seed
    if task == "dtd":
        from nvpt.data.dtd import official_splits

        return official_splits(root, cfg.data.partition, download)[:3]
    if task in ("caltech101", "oxford_flowers102", "oxford_iiit_pet"):
        if task == "caltech101":
            return _caltech101(root, download, seed)[:3]
        return {"oxford_flowers102": _flowers102, "oxford_iiit_pet": _pets}[task](root, download)[:3]
    if task in ("clevr_count", "clevr_dist"):
        return _clevr(task, root, download, seed)
    return {"eurosat": _eurosat, "sun397": _sun397, "kitti": _kitti}[task](root, download, seed)


EXPORTABLE = ("caltech101", "dtd", "oxford_flowers102", "oxford_iiit_pet", "sun397", "eurosat", "clevr_count",
              "clevr_dist", "kitti")
LISTS = ("train800", "val200", "train800val200", "test")


def export(cfg) -> Path:
    """Write <data.root>/<data.task>/{train800,val200,train800val200,test}.txt from torchvision's files."""
    task = cfg.data.task
    if task not in EXPORTABLE:
        raise NVPTError(f"vtab: torchvision cannot download the source of {task}; fetch the VTAB-1k folder as "
                        f"docs/datasets.md says (data.download builds {', '.join(EXPORTABLE)})")
    root = Path(cfg.data.root)
    train, val, test = official(task, cfg, root / FOLDER)
    drawn = copy.deepcopy(cfg)
    drawn.data["vtab1k"] = True
    (train_src, train_idx), (val_src, val_idx) = draw(drawn, task, train, val)
    folder = root / task
    folder.mkdir(parents=True, exist_ok=True)

    def lines(source: Source, indices) -> list[str]:
        return [f"{Path(os.path.relpath(source.paths[i], folder)).as_posix()} {int(source.labels[i])}" for i in indices]

    train800, val200 = lines(train_src, train_idx), lines(val_src, val_idx)
    content = {"train800": train800, "val200": val200, "train800val200": train800 + val200,
               "test": lines(test, range(len(test)))}
    for name in LISTS:  # test.txt last: its presence marks a complete folder
        tmp = folder / f".{name}.txt.tmp"
        tmp.write_text("\n".join(content[name]) + "\n")
        tmp.replace(folder / f"{name}.txt")
    return folder
