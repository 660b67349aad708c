"""VTAB-1k task folders built from torchvision's downloads (nvpt/data/vtab_sources.py), on fixtures in
torchvision's layouts (tests/torchvision_layouts.py) that are already in place, so torchvision finds them and
downloads nothing: the lists' sizes, labels under VTAB's task definitions, paths and the config that reads them."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

import torchvision_layouts as layouts
from conftest import TINY
from nvpt.config import load_config
from nvpt.data import build_datasets
from nvpt.data.vtab_sources import clevr_dist_label, kitti_label
from nvpt.errors import NVPTError

ROOT = Path(__file__).resolve().parent.parent
TINY_MODEL = [o for o in TINY if not o.startswith("model.num_classes=")]


def build(task: str, root: Path, *extra):
    cfg = load_config(ROOT / "configs" / "vtab" / f"{task}.yaml", [f"data.root={root}", "data.download=true",
                                                                   *TINY_MODEL, *extra])
    return build_datasets(cfg, 32, 3, (0.5,) * 3, (0.5,) * 3)


def read(root: Path, task: str) -> dict[str, list[tuple[str, int]]]:
    out = {}
    for name in ("train800", "val200", "train800val200", "test"):
        rows = [line.rsplit(" ", 1) for line in (root / task / f"{name}.txt").read_text().splitlines()]
        out[name] = [(path, int(label)) for path, label in rows]
    return out


def test_vtab_task_definitions():
    assert [kitti_label(o) for o in ([("Car", 4.0)], [("Van", 8.0)], [("Truck", 8.5)], [("Car", 19.9)],
                                     [("Car", 20.5), ("Pedestrian", 3.0)], [("Pedestrian", 3.0)], [])] == [0, 0, 1, 1, 2, 3, 3]
    assert [clevr_dist_label(d) for d in ([7.9, 12], [8.2], [8.7], [9.2], [9.7], [10.5, 11])] == [0, 1, 2, 3, 4, 5]


def test_eurosat_lists_from_torchvision_layout(tmp_path):
    layouts.write_eurosat(tmp_path / "torchvision", per_class=140)  # 1,400 images: 840 / 280 / 280
    tune = build("eurosat", tmp_path, "data.protocol=tune")
    lists = read(tmp_path, "eurosat")
    assert [len(lists[k]) for k in ("train800", "val200", "train800val200", "test")] == [800, 200, 1000, 280]
    paths = {name: {p for p, _ in rows} for name, rows in lists.items()}
    assert not paths["train800"] & paths["val200"] and not (paths["train800"] | paths["val200"]) & paths["test"]
    assert all(p.startswith("../torchvision/eurosat/2750/") for p in paths["test"])
    for path, label in lists["test"]:
        assert path.split("/")[-2] == layouts.EUROSAT_CLASSES[label]  # ImageFolder's sorted class index
    assert (len(tune.train), len(tune.val), len(tune.test)) == (800, 200, 280)
    before = (tmp_path / "eurosat" / "train800.txt").read_text()
    final = build("eurosat", tmp_path)  # the lists are there now: read, not rebuilt
    assert final.val is None and len(final.train) == 1000 and (tmp_path / "eurosat" / "train800.txt").read_text() == before
    other = tmp_path / "seed1"
    layouts.write_eurosat(other / "torchvision", per_class=140)
    build("eurosat", other, "data.split_seed=1")
    assert read(other, "eurosat")["train800"] != lists["train800"]  # data.split_seed draws another split


def test_clevr_count_and_distance_from_the_scene_files(tmp_path):
    val_scenes = layouts.write_clevr(tmp_path / "torchvision", train=2000, val=12)
    for task, classes in (("clevr_count", 8), ("clevr_dist", 6)):
        build(task, tmp_path)
        lists = read(tmp_path, task)
        assert [len(lists[k]) for k in ("train800", "val200", "test")] == [800, 200, 12]  # test: the official val
        for path, label in lists["test"]:
            k = int(path[-10:-4])
            assert path.endswith(val_scenes[k]["image_filename"]) and label == k % classes
        assert set(label for _, label in lists["train800"]) == set(range(classes))


def test_kitti_closest_vehicle_from_the_label_files(tmp_path):
    layouts.write_kitti(tmp_path / "torchvision", images=3600)  # 3,054 / 204 / 342 by TFDS's proportions
    build("kitti", tmp_path)
    lists = read(tmp_path, "kitti")
    assert [len(lists[k]) for k in ("train800", "val200", "test")] == [800, 200, 342]
    assert all(label == int(Path(p).stem) % 4 for p, label in lists["test"] + lists["train800val200"])
    assert Counter(label for _, label in lists["test"]).keys() == {0, 1, 2, 3}


def test_sun397_from_class_name_file(tmp_path):
    layouts.write_sun397(tmp_path / "torchvision", per_class=700)  # 2,100 images: 1,470 / 210 / 420
    data = build("sun397", tmp_path, "data.protocol=tune")
    lists = read(tmp_path, "sun397")
    assert [len(lists[k]) for k in ("train800", "val200", "test")] == [800, 200, 420]
    classes = ("a/abbey", "b/bedroom", "o/outdoor/church")
    assert all(f"/SUN397/{classes[label]}/sun_" in p for p, label in lists["test"])
    assert len(data.val) == 200


def test_what_cannot_be_built_is_one_line(tmp_path):
    with pytest.raises(NVPTError, match=r"torchvision cannot download the source of dmlab; fetch the VTAB-1k folder"):
        build("dmlab", tmp_path)
    with pytest.raises(NVPTError, match=r"eurosat: the VTAB-1k protocol draws 800 images from the official training split"):
        layouts.write_eurosat(tmp_path / "torchvision", per_class=50)
        build("eurosat", tmp_path)
    assert not (tmp_path / "eurosat").exists()  # nothing half-written
    (tmp_path / "torchvision" / "Kitti" / "raw" / "training" / "image_2").mkdir(parents=True)
    (tmp_path / "torchvision" / "Kitti" / "raw" / "training" / "label_2").mkdir(parents=True)
    (tmp_path / "torchvision" / "Kitti" / "raw" / "training" / "image_2" / "000001.png").write_bytes(b"x")
    with pytest.raises(NVPTError, match=r"kitti: cannot read .*000001.txt"):
        build("kitti", tmp_path)
