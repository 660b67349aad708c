"""nvpt.data on tiny fixtures written in each data set's official layout."""
import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import ConcatDataset, DataLoader
from torchvision.datasets import DTD, FashionMNIST

from nvpt.config import load_config
from nvpt.data import build_datasets, holdout_split
from nvpt.data.textures import BANDS, band_rows, largest_crop, load_photos
from nvpt.data.transforms import build_transform, vtab_transform
from nvpt.errors import NVPTError

torch.set_num_threads(1)

IMG = 32
HALF = (0.5, 0.5, 0.5)
COLOURS = [(200, 30, 30), (30, 200, 30), (30, 30, 200)]


def cfg(*overrides):
    return load_config(None, list(overrides))


def build(*overrides, img_size=IMG, in_chans=3, mean=HALF, std=HALF):
    return build_datasets(cfg(*overrides), img_size, in_chans, mean, std)


def write_image(path: Path, colour=(120, 60, 30), size=(20, 14)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


def check_item(dataset, channels=3, size=IMG):
    image, label = dataset[0]
    assert image.dtype == torch.float32 and image.shape == (channels, size, size)
    assert 0.0 <= image.min() and image.max() <= 1.0
    assert isinstance(label, int)
    return image, label


def raises(match_parts, fn):
    with pytest.raises(NVPTError) as info:
        fn()
    message = str(info.value)
    assert "\n" not in message
    for part in match_parts:
        assert str(part) in message, message
    return message


# ---------------------------------------------------------------- transforms


def test_vtab_transform_resizes_without_crop():
    out = build_transform("vtab", 24, 3, train=True)(Image.new("RGB", (50, 20), (255, 0, 0)))
    assert out.shape == (3, 24, 24)
    assert torch.allclose(out[0], torch.ones(24, 24)) and out[1:].abs().max() == 0


def test_fgvc_transform_train_and_eval_sizes():
    image = Image.new("RGB", (60, 40), (10, 20, 30))
    assert build_transform("fgvc", 16, 3, train=True)(image).shape == (3, 16, 16)
    assert build_transform("fgvc", 16, 3, train=False)(image).shape == (3, 16, 16)


def test_transform_channel_conversion():
    grey = vtab_transform(8, 3)(Image.new("L", (10, 10), 100))
    assert grey.shape == (3, 8, 8) and torch.equal(grey[0], grey[1]) and torch.equal(grey[1], grey[2])
    assert vtab_transform(8, 1)(Image.new("RGB", (10, 10), (10, 200, 90))).shape == (1, 8, 8)
    raises(["model.in_chans=4"], lambda: vtab_transform(8, 4))


def test_unknown_transform_and_dataset_guarded():
    raises(["data.transform"], lambda: build_transform("nope", 8, 3, True))
    c = cfg("data.name=textures")
    c.data["name"] = "nope"
    raises(["data.name", "textures"], lambda: build_datasets(c, IMG, 3, HALF, HALF))


# ---------------------------------------------------------------- mean / std


def test_mean_std_default_and_override():
    small = ["data.name=textures", "data.crop_size=16", "data.train_per_class=2", "data.test_per_class=1"]
    bundle = build(*small, mean=(0.1, 0.2, 0.3), std=(0.4, 0.5, 0.6))
    assert bundle.mean == (0.1, 0.2, 0.3) and bundle.std == (0.4, 0.5, 0.6)
    bundle = build(*small, "data.mean=[0.485,0.456,0.406]", "data.std=[0.229,0.224,0.225]")
    assert bundle.mean == (0.485, 0.456, 0.406) and bundle.std == (0.229, 0.224, 0.225)
    one = build(*small, in_chans=1, mean=(0.3, 0.6, 0.9), std=(0.5,))
    assert one.mean == pytest.approx((0.6,)) and one.std == (0.5,)
    raises(["data.mean", "3 channels"], lambda: build(*small, "data.mean=[0.1,0.2]", "data.std=[0.1,0.2]"))


def test_holdout_split_is_seeded_stratified_and_disjoint():
    labels = [0] * 10 + [1] * 20
    train, val = holdout_split(labels, 0.1, seed=3)
    assert sorted(train + val) == list(range(30)) and not set(train) & set(val)
    assert sorted(labels[i] for i in val) == [0, 1, 1]
    assert holdout_split(labels, 0.1, seed=3) == (train, val)
    assert holdout_split(labels, 0.1, seed=4) != (train, val)
    assert holdout_split(labels, 0.0, seed=3) == (list(range(30)), [])


# ---------------------------------------------------------------- textures

SMALL_TEX = ["data.name=textures", "data.crop_size=16", "data.train_per_class=4", "data.test_per_class=3"]


def test_textures_shapes_sizes_and_loader():
    bundle = build(*SMALL_TEX, "data.val_fraction=0.5")
    assert bundle.num_classes == len(bundle.class_names) == 20
    assert {"brick", "grass", "gravel", "cork"} <= set(bundle.class_names)
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (80, 40, 60)
    check_item(bundle.train)
    check_item(bundle.test)
    images, labels = next(iter(DataLoader(bundle.test, batch_size=6)))
    assert images.shape == (6, 3, IMG, IMG) and labels.tolist() == [0, 0, 0, 1, 1, 1]


def test_datasets_pickle_for_worker_processes(vtab_root, dtd_root):
    # spawn-started DataLoader workers receive the datasets pickled
    for bundle in (build(*SMALL_TEX), vtab(vtab_root), build(*DTD_FULL, f"data.root={dtd_root}")):
        for dataset in (bundle.train, bundle.test):
            assert torch.equal(pickle.loads(pickle.dumps(dataset))[0][0], dataset[0][0])


def test_textures_val_size_and_none():
    assert len(build(*SMALL_TEX, "data.val_fraction=0.1").val) == 20  # max(1, round(0.4)) per class
    assert build(*SMALL_TEX, "data.val_fraction=0").val is None


def _stack(dataset):
    return torch.stack([dataset[i][0] for i in range(len(dataset))])


def test_textures_deterministic_per_seed():
    a, b, c = (build(*SMALL_TEX, f"seed={s}") for s in (1, 1, 2))
    assert torch.equal(_stack(a.train), _stack(b.train)) and torch.equal(_stack(a.test), _stack(b.test))
    assert a.train.boxes == b.train.boxes and a.train.boxes != c.train.boxes
    assert not torch.equal(_stack(a.train), _stack(c.train))


def test_textures_train_val_test_regions_are_disjoint():
    bundle = build(*SMALL_TEX, "data.train_per_class=40", "data.test_per_class=40", "data.val_fraction=0.5")
    heights = [array.shape[0] for _, array in load_photos(False)]
    rows = {}
    for split, dataset in zip(BANDS, (bundle.train, bundle.val, bundle.test), strict=True):
        for label, top, _ in dataset.boxes:
            first, end = band_rows(heights[label], split)
            assert first <= top and top + dataset.crop_size <= end
            rows.setdefault(label, {}).setdefault(split, set()).update(range(top, top + dataset.crop_size))
    for per_split in rows.values():
        assert not per_split["train"] & per_split["test"]
        assert not per_split["train"] & per_split["val"] and not per_split["val"] & per_split["test"]


def test_textures_grayscale_and_one_channel():
    grey = build(*SMALL_TEX, "data.grayscale=true")
    image, _ = check_item(grey.train)
    assert torch.equal(image[0], image[1]) and torch.equal(image[1], image[2])
    colour = build(*SMALL_TEX, "data.grayscale=false")
    image, label = colour.train[4 * colour.class_names.index("cork")]
    assert colour.class_names[label] == "cork" and image[0].mean() > image[2].mean() + 0.1  # orange-brown
    check_item(build(*SMALL_TEX, in_chans=1).test, channels=1)


def test_textures_independent_of_cwd_and_root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bundle = build(*SMALL_TEX, "data.root=does/not/exist")
    assert len(bundle.train) == 80


def test_textures_crop_too_large():
    fits = largest_crop(load_photos(False))
    assert fits >= 64  # the default crop size fits
    raises([f"data.crop_size <= {fits}"], lambda: build("data.name=textures", f"data.crop_size={fits + 1}"))


# ---------------------------------------------------------------- dtd

DTD_CLASSES = ["banded", "dotted", "zigzagged"]
DTD_FULL = ("data.name=dtd", "data.vtab1k=false")  # the full partition lists (this fixture is too small for VTAB-1k)


@pytest.fixture
def dtd_root(tmp_path):
    """root/dtd/dtd/images/<class>/<class>_000k.jpg, labels/{train,val,test}1.txt: 2/1/1 per class."""
    data = tmp_path / "dtd" / "dtd"
    lists = {"train": [], "val": [], "test": []}
    for c, name in enumerate(DTD_CLASSES):
        for k, split in enumerate(["train", "train", "val", "test"]):
            write_image(data / "images" / name / f"{name}_{k:04d}.jpg", COLOURS[c])
            lists[split].append(f"{name}/{name}_{k:04d}.jpg")
    (data / "labels").mkdir()
    for split, lines in lists.items():
        (data / "labels" / f"{split}1.txt").write_text("\n".join(lines) + "\n")
    return tmp_path


def test_dtd_tune_protocol(dtd_root):
    bundle = build(*DTD_FULL, f"data.root={dtd_root}", "data.protocol=tune")
    assert bundle.class_names == DTD_CLASSES and bundle.num_classes == 3
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (6, 3, 3)
    image, label = check_item(bundle.test)
    assert label == 0 and image[0].mean() > image[2].mean()  # banded is red
    assert [bundle.test[i][1] for i in range(3)] == [0, 1, 2]


def test_dtd_final_protocol_merges_train_and_val(dtd_root):
    bundle = build(*DTD_FULL, f"data.root={dtd_root}", "data.protocol=final", "data.transform=fgvc")
    assert isinstance(bundle.train, ConcatDataset) and len(bundle.train) == 9
    assert bundle.val is None and len(bundle.test) == 3
    check_item(bundle.train)
    check_item(bundle.test)


def test_dtd_missing(tmp_path):
    raises([tmp_path / "dtd" / "dtd", "data.download=true"], lambda: build(*DTD_FULL, f"data.root={tmp_path}"))


def test_dtd_download(dtd_root, tmp_path_factory, monkeypatch):
    # present data: torchvision finds it and never touches the network
    assert len(build(*DTD_FULL, f"data.root={dtd_root}", "data.download=true").test) == 3

    def offline(self):
        raise RuntimeError("Error downloading:\nno route to host")

    monkeypatch.setattr(DTD, "_download", offline)
    empty = tmp_path_factory.mktemp("empty")
    raises([empty / "dtd", "no route to host"], lambda: build(*DTD_FULL, f"data.root={empty}", "data.download=true"))


def test_dtd_missing_partition_list(dtd_root):
    missing = dtd_root / "dtd" / "dtd" / "labels" / "train2.txt"
    raises([missing], lambda: build(*DTD_FULL, f"data.root={dtd_root}", "data.partition=2"))


def test_dtd_list_names_missing_image(dtd_root):
    missing = dtd_root / "dtd" / "dtd" / "images" / "dotted" / "dotted_0003.jpg"
    missing.unlink()
    raises([missing, "test1.txt"], lambda: build(*DTD_FULL, f"data.root={dtd_root}"))


def test_dtd_corrupt_image(dtd_root):
    bad = dtd_root / "dtd" / "dtd" / "images" / "banded" / "banded_0003.jpg"
    bad.write_bytes(b"this is not a jpeg")
    raises([bad], lambda: build(*DTD_FULL, f"data.root={dtd_root}"))  # found while the data set is built


def test_dtd_split_class_mismatch(dtd_root):
    labels = dtd_root / "dtd" / "dtd" / "labels" / "val1.txt"
    labels.write_text("banded/banded_0002.jpg\n")
    raises(["val1", "dotted"], lambda: build(*DTD_FULL, f"data.root={dtd_root}"))


# ---------------------------------------------------------------- vtab


@pytest.fixture
def vtab_root(tmp_path):
    """root/mytask/images/*.png with train800 (6), val200 (3), train800val200 (9), test (4) lists."""
    task = tmp_path / "mytask"
    names = {"train800": range(6), "val200": range(6, 9), "test": range(9, 13)}
    for list_name, ids in names.items():
        lines = []
        for i in ids:
            label = i % 4 if list_name == "test" else i % 3
            write_image(task / "images" / f"img {i}.png", COLOURS[i % 3])  # a space, as some VTAB paths have
            lines.append(f"images/img {i}.png {label}")
        (task / f"{list_name}.txt").write_text("\n".join(lines) + "\n")
    joint = (task / "train800.txt").read_text() + (task / "val200.txt").read_text()
    (task / "train800val200.txt").write_text(joint)
    return tmp_path


def vtab(root, *extra):
    return build("data.name=vtab", f"data.root={root}", "data.task=mytask", *extra)


def test_vtab_tune_and_final(vtab_root):
    tune = vtab(vtab_root, "data.protocol=tune")
    assert (len(tune.train), len(tune.val), len(tune.test)) == (6, 3, 4)
    assert tune.num_classes == 4 and tune.class_names == ["class_0", "class_1", "class_2", "class_3"]
    assert [tune.test[i][1] for i in range(4)] == [1, 2, 3, 0]
    check_item(tune.val)
    final = vtab(vtab_root, "data.protocol=final")
    assert len(final.train) == 9 and final.val is None and len(final.test) == 4


def test_vtab_classes_file(vtab_root):
    (vtab_root / "mytask" / "classes.txt").write_text("a\nb\nc\nd\n")
    assert vtab(vtab_root).class_names == ["a", "b", "c", "d"]
    (vtab_root / "mytask" / "classes.txt").write_text("a\nb\n")
    raises(["classes.txt"], lambda: vtab(vtab_root))


def test_vtab_missing_task_and_list(vtab_root):
    raises([vtab_root / "other"], lambda: build("data.name=vtab", f"data.root={vtab_root}", "data.task=other"))
    (vtab_root / "mytask" / "train800val200.txt").unlink()
    raises([vtab_root / "mytask" / "train800val200.txt"], lambda: vtab(vtab_root, "data.protocol=final"))


def test_vtab_list_names_missing_image(vtab_root):
    (vtab_root / "mytask" / "images" / "img 10.png").unlink()
    raises([vtab_root / "mytask" / "images" / "img 10.png", "test.txt"], lambda: vtab(vtab_root))


def test_vtab_malformed_line(vtab_root):
    with open(vtab_root / "mytask" / "test.txt", "a") as f:
        f.write("images/img 9.png cat\n")
    raises(["test.txt", "line 5"], lambda: vtab(vtab_root))


def test_vtab_corrupt_image(vtab_root):
    bad = vtab_root / "mytask" / "images" / "img 9.png"
    bad.write_bytes(bad.read_bytes()[:30])  # truncated PNG
    raises([bad], lambda: vtab(vtab_root))  # found while the data set is built


# ---------------------------------------------------------------- image_folder


@pytest.fixture
def folder_root(tmp_path):
    """root/{train,test}/<class>/*.jpg: 10 train and 2 test images per class."""
    for c, name in enumerate(["cat", "dog"]):
        for k in range(10):
            write_image(tmp_path / "train" / name / f"{k}.jpg", COLOURS[c])
        for k in range(2):
            write_image(tmp_path / "test" / name / f"{k}.JPG", COLOURS[c])
    return tmp_path


def folder(root, *extra, in_chans=3):
    return build("data.name=image_folder", f"data.root={root}", *extra, in_chans=in_chans)


def test_image_folder_holdout_val(folder_root):
    bundle = folder(folder_root, "data.val_fraction=0.2")
    assert bundle.class_names == ["cat", "dog"]
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (16, 4, 4)
    assert not {s[0] for s in bundle.train.samples} & {s[0] for s in bundle.val.samples}
    assert sorted(label for _, label in bundle.val.samples) == [0, 0, 1, 1]
    assert folder(folder_root, "data.val_fraction=0.2").val.samples == bundle.val.samples
    check_item(bundle.train)
    check_item(folder(folder_root, in_chans=1).test, channels=1)


def test_image_folder_no_val(folder_root):
    bundle = folder(folder_root, "data.val_fraction=0")
    assert bundle.val is None and len(bundle.train) == 20


def test_image_folder_val_folder(folder_root):
    write_image(folder_root / "val" / "cat" / "v.png")
    write_image(folder_root / "val" / "dog" / "v.png")
    bundle = folder(folder_root)
    assert len(bundle.train) == 20 and len(bundle.val) == 2


def test_image_folder_errors(folder_root, tmp_path_factory):
    empty = tmp_path_factory.mktemp("empty")
    raises([empty / "train"], lambda: folder(empty))
    (empty / "train").mkdir()
    (empty / "test").mkdir()
    raises([empty / "train", "no class"], lambda: folder(empty))

    (folder_root / "test" / "bird").mkdir()
    raises([folder_root / "test" / "bird", "no images"], lambda: folder(folder_root))
    write_image(folder_root / "test" / "bird" / "0.jpg")
    raises(["same class", "bird"], lambda: folder(folder_root))


def test_image_folder_corrupt_image(folder_root):
    bad = folder_root / "test" / "cat" / "0.JPG"
    bad.write_bytes(bad.read_bytes()[:-200])
    raises([bad], lambda: folder(folder_root))  # found while the data set is built


# ---------------------------------------------------------------- fashion_mnist


def write_idx(path: Path, array: np.ndarray, compress=True):
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    data = header + array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if compress:
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


@pytest.fixture
def fmnist_root(tmp_path):
    """Official idx files: 60 training images (6 per class), 20 test images; pixel value = 20 * label."""
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 60), ("t10k", 20)):
        labels = rng.permutation(np.arange(n) % 10)
        images = np.repeat(labels[:, None, None] * 20, 28, axis=1).repeat(28, axis=2)
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return tmp_path


def fmnist(root, *extra, in_chans=1):
    return build("data.name=fashion_mnist", f"data.root={root}", *extra, in_chans=in_chans)


def test_fashion_mnist_reads_idx(fmnist_root):
    bundle = fmnist(fmnist_root, "data.val_fraction=0.2")
    assert bundle.num_classes == 10 and bundle.class_names[0] == "T-shirt/top" and bundle.class_names[9] == "Ankle boot"
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (50, 10, 20)  # round(6 * 0.2) = 1 per class
    for dataset in (bundle.train, bundle.test):
        image, label = check_item(dataset, channels=1)
        assert image.mean().item() == pytest.approx(20 * label / 255, abs=1e-6)
    rgb, _ = check_item(fmnist(fmnist_root, in_chans=3).train, channels=3)
    assert torch.equal(rgb[0], rgb[2])
    assert fmnist(fmnist_root, "data.val_fraction=0").val is None


def test_fashion_mnist_subset_is_balanced_and_seeded(fmnist_root):
    a = fmnist(fmnist_root, "data.subset=20", "data.val_fraction=0")
    labels = sorted(a.train[i][1] for i in range(len(a.train)))
    assert labels == sorted(list(range(10)) * 2)
    b = fmnist(fmnist_root, "data.subset=20", "data.val_fraction=0", "seed=1")
    assert a.train.indices.tolist() != b.train.indices.tolist()
    assert fmnist(fmnist_root, "data.subset=20", "data.val_fraction=0").train.indices.tolist() == a.train.indices.tolist()


def test_fashion_mnist_uncompressed_and_torchvision_folder(fmnist_root, tmp_path_factory):
    raw = tmp_path_factory.mktemp("tv") / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for path in fmnist_root.glob("*.gz"):
        with gzip.open(path) as f:
            (raw / path.stem).write_bytes(f.read())
    assert len(fmnist(raw.parent.parent, "data.val_fraction=0").train) == 60


def test_fashion_mnist_missing(tmp_path):
    raises([tmp_path, "apt-get install dataset-fashion-mnist", "data.download=true"], lambda: fmnist(tmp_path))


def test_fashion_mnist_download_failure(tmp_path, monkeypatch):
    def offline(self):
        raise RuntimeError("Error downloading:\nno route to host")

    monkeypatch.setattr(FashionMNIST, "download", offline)
    raises([tmp_path, "no route to host", "apt-get install"], lambda: fmnist(tmp_path, "data.download=true"))


def test_fashion_mnist_corrupt_files(fmnist_root):
    labels = fmnist_root / "t10k-labels-idx1-ubyte.gz"
    write_idx(labels, np.arange(5))  # 5 labels for 20 images
    raises(["t10k-images", "t10k-labels"], lambda: fmnist(fmnist_root))
    labels.write_bytes(b"garbage, not gzip")
    raises([labels], lambda: fmnist(fmnist_root))
    with gzip.open(labels, "wb") as f:
        f.write(bytes([0, 0, 8, 1, 0, 0, 0, 20, 1, 2]))  # claims 20 labels, holds 2
    raises([labels, "truncated"], lambda: fmnist(fmnist_root))
