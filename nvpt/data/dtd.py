"""Describable Textures Dataset through torchvision.datasets.DTD (47 classes, partitions 1..10).

torchvision downloads and extracts the official archive (dtd-r1.0.1.tar.gz) into
<root>/dtd: <root>/dtd/dtd/images/<class>/<file>.jpg and <root>/dtd/dtd/labels/{train,val,test}<N>.txt
with lines `<class>/<file>.jpg` (40 images per class and list: 1,880 each).
VTAB-1k (data.vtab1k, the default): 800 images drawn from partition N's train list and 200 from its
val list, tested on its test list (nvpt/data/vtab1k.py); data.vtab1k=false: the full lists.
"""
from __future__ import annotations

from pathlib import Path

from torchvision.datasets import DTD

from nvpt.data import Splits, torchvision_download
from nvpt.data.vtab1k import Source, protocol_splits
from nvpt.errors import NVPTError

TEST_SIZE = 1880  # images in every partition's test list
FALLBACK = "on a machine without internet extract the official archive dtd-r1.0.1.tar.gz into {} (see docs/datasets.md)"


def _split(root: Path, data_dir: Path, split: str, partition: int) -> tuple[Source, list[str]]:
    """A split's images and labels (torchvision's parse of the list) and its sorted class names."""
    list_file = data_dir / "labels" / f"{split}{partition}.txt"
    if not list_file.is_file():
        raise NVPTError(f"dtd: label list {list_file} not found; the DTD folder {data_dir} is incomplete, re-extract the official archive")
    try:
        parsed = DTD(root=root, split=split, partition=partition)
    except ValueError:  # a line without exactly one "/"
        raise NVPTError(f"dtd: {list_file} has a line that is not <class>/<file>.jpg; re-extract the official archive") from None
    if not parsed._image_files:
        raise NVPTError(f"dtd: label list {list_file} is empty; re-extract the official archive")
    source = Source(parsed._labels, paths=parsed._image_files)
    source.check_files(list_file)
    return source, parsed.classes


def official_splits(root: Path, partition: int, download: bool) -> tuple[Source, Source, Source, list[str]]:
    """Partition `partition`'s train, val and test lists (downloaded first when `download`) and the class names."""
    data_dir = root / "dtd" / "dtd"  # torchvision's layout: <root>/<class name lower>/dtd
    if download:
        torchvision_download(lambda: DTD(root=root, split="test", download=True), "dtd", root / "dtd",
                             FALLBACK.format(root / "dtd"))
    if not data_dir.is_dir():
        raise NVPTError(
            f"dtd: dataset not found, looked in {data_dir}; pass data.download=true on a machine with internet, "
            f"or extract the official DTD archive dtd-r1.0.1.tar.gz into {root / 'dtd'}"
        )
    sources, classes = {}, {}
    for split in ("train", "val", "test"):
        sources[split], classes[split] = _split(root, data_dir, split, partition)
    # torchvision numbers the classes of each split separately; they only agree when every split has every class.
    for split in ("val", "test"):
        if classes[split] != classes["train"]:
            differ = sorted(set(classes[split]) ^ set(classes["train"]))
            raise NVPTError(f"dtd: the {split}{partition} and train{partition} label lists cover different classes ({', '.join(differ)})")
    return sources["train"], sources["val"], sources["test"], classes["train"]


def build(cfg, img_size: int, in_chans: int) -> Splits:
    partition = cfg.data.partition
    train, val, test, classes = official_splits(Path(cfg.data.root), partition, cfg.data.download)
    return protocol_splits(cfg, f"dtd partition {partition}", train, val, test, classes, img_size, in_chans)
