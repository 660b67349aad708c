"""Tiny data sets in the benchmark's released layouts, for tests: VTAB-1k's get_vtab1k.py export and the VPT
reference's FGVC JSON splits. Images are small solid-colour JPEGs (one colour per class), a handful per split.

    write_vtab1k(root, tasks)   <root>/<task>/images/<split>_<k>.jpg and {train800,val200,train800val200,test}.txt,
                                lines `images/<split>_<k>.jpg <label>`; labels 0, 1 and the task's last class
    write_fgvc(root, names)     <root>/<folder>/<image folder>/<class>/<k>.jpg and {train,val,test}.json mapping the
                                path (relative to the image folder) to a class id; CUB-style ids 1.. (not 0..)
"""
from __future__ import annotations

import json
from pathlib import Path

from nvpt.suites import FGVC, VTAB
from torchvision_layouts import jpeg_bytes

SPLIT_SIZES = {"train800": 4, "val200": 2, "test": 3}


def _labels(classes: int, count: int) -> list[int]:
    cycle = [0, 1, classes - 1] if classes > 2 else [0, 1]
    return [cycle[k % len(cycle)] for k in range(count)]


def write_vtab1k(root: Path, tasks=tuple(VTAB), size: int = 8, sizes: dict | None = None) -> Path:
    sizes = sizes or SPLIT_SIZES
    for task in tasks:
        classes = VTAB[task].classes
        folder = Path(root) / task
        (folder / "images").mkdir(parents=True, exist_ok=True)
        lines = {}
        for split, count in sizes.items():
            lines[split] = []
            for k, label in enumerate(_labels(classes, count)):
                name = f"images/{split}_{k}.jpg"
                (folder / name).write_bytes(jpeg_bytes(label, classes, size))
                lines[split].append(f"{name} {label}")
        lines["train800val200"] = lines["train800"] + lines["val200"]
        for split, rows in lines.items():
            (folder / f"{split}.txt").write_text("\n".join(rows) + "\n")
    return Path(root)


def write_fgvc(root: Path, names=tuple(FGVC), size: int = 8, sizes: tuple[int, int, int] = (4, 2, 3)) -> Path:
    for name in names:
        info = FGVC[name]
        folder = Path(root) / info.folder
        images = folder / info.images if info.images else folder
        for split, count in zip(("train", "val", "test"), sizes):
            anno = {}
            for k, label in enumerate(_labels(info.classes, count)):
                relative = f"{label + 1:03d}.class/{split}_{k}.jpg"
                (images / relative).parent.mkdir(parents=True, exist_ok=True)
                (images / relative).write_bytes(jpeg_bytes(label, info.classes, size))
                anno[relative] = label + 1  # class ids as CUB's: 1..N
            (folder / f"{split}.json").write_text(json.dumps(anno))
    return Path(root)
