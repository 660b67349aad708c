"""VTAB-1k in the layout used by the prompt-tuning literature (NOAH, SSF, ...).

<root>/<task>/{train800,val200,train800val200,test}.txt, each line `relative/path label`
with the path relative to the task folder. protocol tune: train800 / val200 / test;
final: train800val200 / no val / test. An optional classes.txt names the classes, one per line.
With data.download=true a missing task folder is built from torchvision's download where it has the
task's source (nvpt/data/vtab_sources.py).
"""
from __future__ import annotations

from pathlib import Path

from nvpt.data import Splits
from nvpt.data.image_folder import ImageList, check_files_exist
from nvpt.data.transforms import build_transform
from nvpt.errors import NVPTError

_LISTS = {"tune": ("train800", "val200", "test"), "final": ("train800val200", None, "test")}


def read_list(list_file: Path, task_dir: Path) -> list[tuple[Path, int]]:
    """(absolute path, label) samples of one `relative/path label` list file."""
    if not list_file.is_file():
        raise NVPTError(
            f"vtab: list file {list_file} not found; each task folder needs train800.txt, val200.txt, "
            f"train800val200.txt and test.txt (see docs/datasets.md)"
        )
    samples = []
    for number, line in enumerate(list_file.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.strip().rsplit(maxsplit=1)  # rsplit: image paths may contain spaces
        if len(parts) != 2 or not parts[1].isdigit():
            raise NVPTError(f"vtab: {list_file} line {number} must be '<relative/path> <integer label>', got {line.strip()!r}")
        samples.append((task_dir / parts[0], int(parts[1])))
    if not samples:
        raise NVPTError(f"vtab: list file {list_file} is empty")
    check_files_exist([path for path, _ in samples], list_file)
    return samples


def build(cfg, img_size: int, in_chans: int) -> Splits:
    task_dir = Path(cfg.data.root) / cfg.data.task
    if cfg.data.download and not (task_dir / "test.txt").is_file():  # test.txt is written last
        from nvpt.data.vtab_sources import export

        export(cfg)
    if not task_dir.is_dir():
        raise NVPTError(
            f"vtab: task folder {task_dir} not found; put the VTAB-1k data under data.root "
            f"(<root>/<task>/train800.txt ...) and set data.task (see docs/datasets.md)"
        )
    names = _LISTS[cfg.data.protocol]
    lists = {name: read_list(task_dir / f"{name}.txt", task_dir) for name in names if name}
    num_classes = 1 + max(label for samples in lists.values() for _, label in samples)

    classes_file = task_dir / "classes.txt"
    if classes_file.is_file():
        class_names = [line.strip() for line in classes_file.read_text().splitlines() if line.strip()]
        if len(class_names) < num_classes:
            raise NVPTError(f"vtab: {classes_file} names {len(class_names)} classes but the lists use labels up to {num_classes - 1}")
    else:
        class_names = [f"class_{i}" for i in range(num_classes)]

    train_name, val_name, test_name = names
    train_tf = build_transform(cfg.data.transform, img_size, in_chans, train=True)
    eval_tf = build_transform(cfg.data.transform, img_size, in_chans, train=False)
    val = ImageList(lists[val_name], eval_tf) if val_name else None
    return Splits(ImageList(lists[train_name], train_tf), val, ImageList(lists[test_name], eval_tf), class_names)
