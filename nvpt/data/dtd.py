"""Describable Textures Dataset through torchvision.datasets.DTD (47 classes, partitions 1..10).

torchvision expects <root>/dtd/dtd/images/<class>/<file>.jpg and
<root>/dtd/dtd/labels/{train,val,test}<partition>.txt with lines `<class>/<file>.jpg`.
protocol tune: train / val / test; final: train+val / no val / test.
"""
from __future__ import annotations

from pathlib import Path

from torch.utils.data import ConcatDataset
from torchvision.datasets import DTD

from nvpt.data import Splits, torchvision_download
from nvpt.data.image_folder import check_files_exist, load_image
from nvpt.data.transforms import build_transform
from nvpt.errors import NVPTError


def _check_split(data_dir: Path, split: str, partition: int) -> None:
    """Fail early, with the file named, when a label list or an image it names is missing."""
    list_file = data_dir / "labels" / f"{split}{partition}.txt"
    if not list_file.is_file():
        raise NVPTError(f"dtd: label list {list_file} not found; the DTD folder {data_dir} is incomplete, re-extract the official archive")
    lines = [line.strip() for line in list_file.read_text().splitlines() if line.strip()]
    if not lines:
        raise NVPTError(f"dtd: label list {list_file} is empty; re-extract the official archive")
    check_files_exist([data_dir / "images" / line for line in lines], list_file)


def _download(root: Path) -> None:
    torchvision_download(lambda: DTD(root=root, split="train", download=True), "dtd", root / "dtd",
                         "on a machine without internet place the official archive there instead (see docs/datasets.md)")


def build(cfg, img_size: int, in_chans: int) -> Splits:
    root = Path(cfg.data.root)
    data_dir = root / "dtd" / "dtd"  # torchvision's layout: <root>/<class name lower>/dtd
    if cfg.data.download:
        _download(root)
    if not data_dir.is_dir():
        raise NVPTError(
            f"dtd: dataset not found, looked in {data_dir}; pass data.download=true on a machine with internet, "
            f"or extract the official DTD archive dtd-r1.0.1.tar.gz into {root / 'dtd'}"
        )
    partition = cfg.data.partition
    train_tf = build_transform(cfg.data.transform, img_size, in_chans, train=True)
    eval_tf = build_transform(cfg.data.transform, img_size, in_chans, train=False)
    final = cfg.data.protocol == "final"
    # final trains on train+val, so val gets the training transform there.
    transforms = {"train": train_tf, "val": train_tf if final else eval_tf, "test": eval_tf}
    sets = {}
    for split, transform in transforms.items():
        _check_split(data_dir, split, partition)
        sets[split] = DTD(root=root, split=split, partition=partition, transform=transform, loader=load_image)
    # torchvision numbers the classes of each split separately; they only agree when every split has every class.
    classes = sets["train"].classes
    for split in ("val", "test"):
        if sets[split].classes != classes:
            differ = sorted(set(sets[split].classes) ^ set(classes))
            raise NVPTError(f"dtd: the {split}{partition} and train{partition} label lists cover different classes ({', '.join(differ)})")
    if final:
        return Splits(ConcatDataset([sets["train"], sets["val"]]), None, sets["test"], list(classes))
    return Splits(sets["train"], sets["val"], sets["test"], list(classes))
