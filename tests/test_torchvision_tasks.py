"""DTD and the torchvision VTAB-1k tasks on tiny fixtures in torchvision's official layouts.

The shipped configs run end to end offline (tools/train.py in-process, a local timm checkpoint
through model.pretrained_file, a tiny ViT); the VTAB-1k draw gives 1,000 training and, for DTD,
1,880 test images; torchvision's download path is driven at its boundary, urllib.request.urlopen,
with a served archive, a 404, corrupt bytes and no network.
"""
from __future__ import annotations

import hashlib
import io
import json
import pickle
import re
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file
from torchvision import datasets as tvd

import torchvision_layouts as layouts
from conftest import TINY, run_tool
from nvpt.config import load_config
from nvpt.data import build_datasets
from nvpt.errors import NVPTError

ROOT = Path(__file__).resolve().parent.parent
HALF = (0.5, 0.5, 0.5)
# the tiny ViT of conftest, its head sized by the config (47 classes for DTD, 37 for the pets)
TINY_MODEL = [o for o in TINY if not o.startswith("model.num_classes=")]
QUICK = ["data.num_workers=0", "train.epochs=1", "train.warmup_epochs=0", "train.threads=1",
         "eval.gaussian_std=[0.1]", "eval.corruptions=[]"]


def build(*overrides):
    return build_datasets(load_config(None, list(overrides)), 32, 3, HALF, HALF)


def paths(dataset) -> list[Path]:
    return [path for path, _ in dataset.samples]


@pytest.fixture(scope="module")
def dtd_root(tmp_path_factory) -> Path:
    """The whole of DTD's partitions 1 and 2 (5,640 8x8 JPEGs) in torchvision's layout."""
    return layouts.write_dtd(tmp_path_factory.mktemp("dtd"), partitions=(1, 2))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A timm-format ViT checkpoint (state_dict in safetensors), its head of another size, as IN-21k weights are."""
    kwargs = dict(img_size=32, patch_size=8, depth=3, embed_dim=48, num_heads=3, num_classes=11)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, **kwargs)
    path = tmp_path_factory.mktemp("weights") / "vit_tiny_in21k.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def run_train(monkeypatch, capsys, *argv) -> tuple[int, str, str]:
    return run_tool(monkeypatch, capsys, "train", *argv)


def assert_one_error_line(rc: int, err: str, *parts: str) -> str:
    """Exit 2 and exactly one `error:` line, the last on stderr (a download may draw a progress bar before it)."""
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert rc == 2 and "Traceback" not in err and len(errors) == 1 and lines[-1] == errors[0], err[-3000:]
    for part in parts:
        assert str(part) in errors[0], errors[0]
    return errors[0]


# ---------------------------------------------------------------- the VTAB-1k draw on DTD


def test_dtd_vtab1k_sizes_and_sources(dtd_root):
    lists = {split: (dtd_root / "dtd/dtd/labels" / f"{split}1.txt").read_text().split() for split in ("train", "val", "test")}
    images = dtd_root / "dtd" / "dtd" / "images"
    final = build("data.name=dtd", f"data.root={dtd_root}")
    assert (len(final.train), final.val, len(final.test), final.num_classes) == (1000, None, 1880, 47)
    tune = build("data.name=dtd", f"data.root={dtd_root}", "data.protocol=tune")
    assert (len(tune.train), len(tune.val), len(tune.test)) == (800, 200, 1880)
    train, val = paths(tune.train), paths(tune.val)
    assert len(set(train)) == 800 and len(set(val)) == 200
    assert {str(p.relative_to(images)) for p in train} <= set(lists["train"])  # 800 of partition 1's train list
    assert {str(p.relative_to(images)) for p in val} <= set(lists["val"])  # 200 of its val list
    assert [str(p.relative_to(images)) for p in paths(tune.test)] == lists["test"]  # all of its test list, in order
    # final trains on exactly the tune split's 1,000 images
    assert [paths(part) for part in final.train.datasets] == [train, val]
    # labels follow the class folder
    assert all(tune.class_names[label] == path.parent.name for path, label in tune.train.samples)
    image, label = tune.test[0]
    assert image.shape == (3, 32, 32) and label == 0


def test_dtd_draw_is_fixed_by_split_seed_not_by_seed(dtd_root):
    base = ["data.name=dtd", f"data.root={dtd_root}", "data.protocol=tune"]
    reference = build(*base)
    other_seed = build(*base, "seed=7")
    other_split = build(*base, "data.split_seed=1")
    assert paths(other_seed.train) == paths(reference.train) and paths(other_seed.val) == paths(reference.val)
    assert paths(other_split.train) != paths(reference.train)
    # partition 2 draws from its own lists
    p2 = build(*base, "data.partition=2")
    test2 = (dtd_root / "dtd/dtd/labels/test2.txt").read_text().split()
    assert [f"{p.parent.name}/{p.name}" for p in paths(p2.test)] == test2
    # the full official lists
    full = build("data.name=dtd", f"data.root={dtd_root}", "data.vtab1k=false", "data.protocol=tune")
    assert (len(full.train), len(full.val), len(full.test)) == (1880, 1880, 1880)


def test_vtab1k_needs_enough_images(tmp_path):
    layouts.write_dtd(tmp_path, per_list=4)  # 188 images per list
    with pytest.raises(NVPTError, match=r"draws 800 images from the official training split, which holds only 188"):
        build("data.name=dtd", f"data.root={tmp_path}")
    assert len(build("data.name=dtd", f"data.root={tmp_path}", "data.vtab1k=false").train) == 376


# ---------------------------------------------------------------- the shipped configs, end to end


def test_dtd_config_end_to_end_offline(dtd_root, checkpoint, tmp_path, monkeypatch, capsys):
    """configs/dtd.yaml as a user without internet runs it: data.root at the extracted archive, local weights.
    The config keeps data.download=true: present data must not touch the network."""
    import nvpt.models.backbone as backbone

    def no_network(*args, **kwargs):
        raise AssertionError("the network was used although the data is present")

    loaded = []
    real_load = backbone.load_backbone_file

    def spy(model, path):
        loaded.append(Path(path))
        return real_load(model, path)

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    monkeypatch.setattr(backbone, "load_backbone_file", spy)
    rc, out, err = run_train(monkeypatch, capsys, ROOT / "configs/dtd.yaml", f"data.root={dtd_root}",
                             f"model.pretrained_file={checkpoint}", *TINY_MODEL, *QUICK, f"output_dir={tmp_path}")
    assert rc == 0, err
    run_dir = tmp_path / "dtd-spike_nvpt-s0"
    results = json.loads((run_dir / "results.json").read_text())
    assert results["images"] == {"train": 1000, "val": 0, "test": 1880}
    assert 0 <= results["clean"] <= 100 and set(results["sets"]) == {"gaussian@0.1"}
    assert results["corruption_table"] == "cifar"  # 32 px (auto); the paper runs set imagenet
    assert loaded == [checkpoint]
    saved = load_config(run_dir / "config.yaml")
    assert (saved.data.name, saved.data.download, saved.data.vtab1k, saved.model.num_classes) == ("dtd", True, True, 47)


def test_pets_config_end_to_end_offline(tmp_path, checkpoint, monkeypatch, capsys):
    root = layouts.write_pets(tmp_path / "data")
    rc, out, err = run_train(monkeypatch, capsys, ROOT / "configs/natural/oxford_iiit_pet.yaml", f"data.root={root}",
                             f"model.pretrained_file={checkpoint}", *TINY_MODEL, *QUICK, "prompt.method=vpt_deep",
                             "data.protocol=tune", f"output_dir={tmp_path / 'runs'}")
    assert rc == 0, err
    results = json.loads((tmp_path / "runs" / "oxford_iiit_pet-vpt_deep-s0" / "results.json").read_text())
    assert results["images"] == {"train": 800, "val": 200, "test": 74} and results["best_val_acc"] is not None


# ---------------------------------------------------------------- the other tasks' layouts


def test_pets_classes_and_draw(tmp_path):
    root = layouts.write_pets(tmp_path)
    bundle = build("data.name=oxford_iiit_pet", f"data.root={root}")
    assert (len(bundle.train), len(bundle.test), bundle.num_classes) == (1000, 74, 37)
    assert bundle.class_names[:2] == ["Abyssinian", "American Bulldog"]
    # the test split is annotations/test.txt, in order; labels are its class ids - 1
    lines = (root / "oxford-iiit-pet/annotations/test.txt").read_text().split("\n")
    assert [(p.stem, label + 1) for p, label in bundle.test.samples] == [(l.split()[0], int(l.split()[1])) for l in lines if l]
    (root / "oxford-iiit-pet/images/Bengal_29.jpg").unlink()  # a test image
    with pytest.raises(NVPTError, match=r"annotations/test\.txt names .*Bengal_29\.jpg, which does not exist"):
        build("data.name=oxford_iiit_pet", f"data.root={root}")


def test_flowers102_official_train_and_val(tmp_path, monkeypatch):
    sums = layouts.write_flowers102(tmp_path)
    with pytest.raises(NVPTError, match=r"oxford_flowers102: dataset not found or corrupted in .*flowers-102"):
        build("data.name=oxford_flowers102", f"data.root={tmp_path}")  # not the official .mat files: MD5 refused
    for key, name in (("label", "imagelabels.mat"), ("setid", "setid.mat")):
        monkeypatch.setitem(tvd.Flowers102._file_dict, key, (name, sums[name]))
    bundle = build("data.name=oxford_flowers102", f"data.root={tmp_path}", "data.protocol=tune")
    assert (len(bundle.train), len(bundle.val), len(bundle.test), bundle.num_classes) == (800, 200, 102, 102)
    ids = {p.stem for p in paths(bundle.train)}, {p.stem for p in paths(bundle.val)}
    # image ids 1..8 of each class of 11 are train, 9..10 val, 11 test (write_flowers102)
    assert all((int(s[6:]) - 1) % 11 < 8 for s in ids[0]) and all(8 <= (int(s[6:]) - 1) % 11 < 10 for s in ids[1])
    assert [label for _, label in bundle.test.samples] == list(range(102))


def test_svhn_arrays_and_digit_zero(tmp_path, monkeypatch):
    sums = layouts.write_svhn(tmp_path / "svhn")
    for split in ("train", "test"):
        monkeypatch.setitem(tvd.SVHN.split_list, split, [*tvd.SVHN.split_list[split][:2], sums[split]])
    bundle = build("data.name=svhn", f"data.root={tmp_path}")
    assert (len(bundle.train), bundle.val, len(bundle.test), bundle.class_names) == (1000, None, 30, [str(d) for d in range(10)])
    assert [bundle.test[i][1] for i in range(12)] == [i % 10 for i in range(12)]  # SVHN's label 10 is the digit 0
    image, _ = bundle.test[3]
    expected = torch.tensor(layouts.colour(3, 10), dtype=torch.float32) / 255
    assert torch.allclose(image.mean(dim=(1, 2)), expected, atol=1e-3)


def test_caltech101_thirty_per_class_and_background(tmp_path):
    root = layouts.write_caltech101(tmp_path)
    tune = build("data.name=caltech101", f"data.root={root}", "data.protocol=tune")
    assert (len(tune.train), len(tune.val), len(tune.test), tune.num_classes) == (800, 200, 102, 102)
    assert tune.class_names[0] == "BACKGROUND_Google"
    assert sorted(label for _, label in tune.test.samples) == list(range(102))  # 31 per class: 30 train, 1 test
    drawn = set(paths(tune.train)) | set(paths(tune.val))
    assert not drawn & set(paths(tune.test))
    again = build("data.name=caltech101", f"data.root={root}", "data.protocol=tune", "seed=5")
    assert paths(again.test) == paths(tune.test)
    other = build("data.name=caltech101", f"data.root={root}", "data.protocol=tune", "data.split_seed=1")
    assert paths(other.test) != paths(tune.test)
    shutil.rmtree(root / "caltech101/101_ObjectCategories/category_005")
    (root / "caltech101/101_ObjectCategories/category_005").mkdir()
    with pytest.raises(NVPTError, match=r"category_005 holds 0 images"):
        build("data.name=caltech101", f"data.root={root}")


def test_cifar100_refuses_files_that_are_not_the_official_ones(tmp_path):
    """torchvision unpickles CIFAR's batches only after their MD5 matches: a pickle that runs code is never loaded."""
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    for name in ("train", "test", "meta"):
        (folder / name).write_bytes(pickle.dumps(Evil()))
    with pytest.raises(NVPTError, match=r"cifar100: dataset not found or corrupted in .*cifar-100-python"):
        build("data.name=cifar100", f"data.root={tmp_path}")
    assert not marker.exists()


# ---------------------------------------------------------------- downloads, at urllib's boundary


class Served(io.BytesIO):
    """What urlopen returns: the bytes of one URL, its final URL (no redirect) and length."""

    def __init__(self, url: str, data: bytes):
        super().__init__(data)
        self.url, self.length = url, len(data)


def serve(monkeypatch, files: dict[str, bytes | Exception]) -> list[str]:
    """urllib.request.urlopen answering from `files` (URL -> bytes, or an exception to raise); returns the URLs asked."""
    asked = []

    def urlopen(request, *args, **kwargs):
        url = request.full_url if isinstance(request, urllib.request.Request) else request
        asked.append(url)
        answer = files.get(url, urllib.error.HTTPError(url, 404, "Not Found", {}, None))
        if isinstance(answer, Exception):
            raise answer
        return Served(url, answer)

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    return asked


@pytest.fixture(scope="module")
def dtd_archive(dtd_root, tmp_path_factory) -> tuple[bytes, str]:
    """dtd-r1.0.1.tar.gz as the server holds it (top folder dtd/) and its MD5."""
    archive = tmp_path_factory.mktemp("archive") / "dtd-r1.0.1.tar.gz"
    md5 = layouts.tar_gz(dtd_root / "dtd" / "dtd", archive)
    return archive.read_bytes(), md5


def test_download_fetches_checks_and_extracts_dtd(tmp_path, dtd_archive, monkeypatch):
    data, md5 = dtd_archive
    asked = serve(monkeypatch, {tvd.DTD._URL: data})
    monkeypatch.setattr(tvd.DTD, "_MD5", md5)  # our archive stands in for the official one
    bundle = build("data.name=dtd", f"data.root={tmp_path}", "data.download=true")
    assert (len(bundle.train), len(bundle.test)) == (1000, 1880)
    assert asked and set(asked) == {tvd.DTD._URL}
    assert (tmp_path / "dtd" / "dtd-r1.0.1.tar.gz").is_file() and (tmp_path / "dtd/dtd/labels/test1.txt").is_file()
    asked.clear()
    build("data.name=dtd", f"data.root={tmp_path}", "data.download=true")
    assert asked == []  # extracted data is reused, nothing fetched again
    # offline with the archive itself in place: torchvision checks its MD5 and extracts it, no network
    local = tmp_path / "local"
    (local / "dtd").mkdir(parents=True)
    (local / "dtd" / "dtd-r1.0.1.tar.gz").write_bytes(data)
    assert len(build("data.name=dtd", f"data.root={local}", "data.download=true").test) == 1880
    assert asked == []


DOWNLOAD_FAULTS = {
    "no-network": (urllib.error.URLError(OSError(101, "Network is unreachable")), r"no connection \(.*Network is unreachable\)"),
    "missing-archive": (None, r"the server answered 404 Not Found for https://www\.robots\.ox\.ac\.uk/.*dtd-r1\.0\.1\.tar\.gz"),
    "corrupt-archive": (b"\x1f\x8b truncated", r"does not match its MD5 checksum"),
}


@pytest.mark.parametrize("fault", list(DOWNLOAD_FAULTS))
def test_download_faults_are_one_line(fault, tmp_path, monkeypatch, capsys):
    answer, pattern = DOWNLOAD_FAULTS[fault]
    serve(monkeypatch, {} if answer is None else {tvd.DTD._URL: answer})
    runs = tmp_path / "runs"
    rc, _, err = run_train(monkeypatch, capsys, ROOT / "configs/dtd.yaml", f"data.root={tmp_path / 'data'}",
                           *TINY_MODEL, *QUICK, f"output_dir={runs}")
    line = assert_one_error_line(rc, err, "dtd:", str(tmp_path / "data" / "dtd"), "docs/datasets.md")
    assert re.search(pattern, line), line
    assert not runs.exists()  # nothing half-made
    assert fault == "corrupt-archive" or not (tmp_path / "data").exists()  # no empty folders left behind


def test_downloaded_archive_that_does_not_unpack(tmp_path, monkeypatch):
    garbage = b"\x1f\x8b\x08\x00" + bytes(200)  # a gzip header, then nothing a tar holds
    serve(monkeypatch, {tvd.DTD._URL: garbage})
    monkeypatch.setattr(tvd.DTD, "_MD5", hashlib.md5(garbage).hexdigest())
    with pytest.raises(NVPTError, match=r"dtd: an archive downloaded into .* does not unpack .*delete it and run again"):
        build("data.name=dtd", f"data.root={tmp_path}", "data.download=true")


def test_torchvision_task_download_without_network(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no route")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    for name, where in (("svhn", "svhn"), ("oxford_iiit_pet", "oxford-iiit-pet"), ("caltech101", "caltech101")):
        with pytest.raises(NVPTError, match=rf"{name}: cannot download into .*{where}.*: no connection \(no route\); on a machine"):
            build(f"data.name={name}", f"data.root={tmp_path}", "data.download=true")
    with pytest.raises(NVPTError, match=r"svhn: dataset not found or corrupted in .*svhn.*data\.download=true"):
        build("data.name=svhn", f"data.root={tmp_path}")


# ---------------------------------------------------------------- run folders


def test_cupy_backend_on_a_cpu_machine_leaves_no_run_folder(tmp_path, monkeypatch, capsys):
    if torch.cuda.is_available():
        pytest.skip("needs a machine without CUDA")
    config = ROOT / "configs/demo/spike_nvpt.yaml"
    rc, _, err = run_train(monkeypatch, capsys, config, "spike.backend=cupy", f"output_dir={tmp_path}", *QUICK)
    assert_one_error_line(rc, err, "spike.backend=cupy requested but the prompts are not on CUDA")
    assert not any(tmp_path.iterdir())
