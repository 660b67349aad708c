"""Decode once (nvpt.data.cache): the cached images equal the decoded ones bit for bit, a second build opens no
image, a changed file or size makes a new cache, concurrent builders decode once, big sets go to disk, and a run
trains and scores the same with and without the cache."""
import multiprocessing
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from conftest import tiny_cfg
from nvpt.config import load_config
from nvpt.data import build_datasets, image_folder
from nvpt.data.cache import CachedImages, cached_dataset, deterministic, unit_float
from nvpt.engine.distributed import DistInfo
from nvpt.engine.run import make_loader

IMG = 24
HALF = (0.5, 0.5, 0.5)


def noisy_image(path: Path, seed: int, size=(19, 13)):
    """An RGB image of random pixels (every uint8 value turns up after a bicubic resize)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


@pytest.fixture
def vtab_root(tmp_path):
    """root/task/images/*.png (random pixels) with train800 (6), val200 (3), train800val200 and test (5) lists."""
    task = tmp_path / "data" / "task"
    ids = {"train800": range(6), "val200": range(6, 9), "test": range(9, 14)}
    for name, numbers in ids.items():
        for i in numbers:
            noisy_image(task / "images" / f"{i}.png", i, size=(19 + i, 13 + 2 * i))
        (task / f"{name}.txt").write_text("".join(f"images/{i}.png {i % 3}\n" for i in numbers))
    (task / "train800val200.txt").write_text((task / "train800.txt").read_text() + (task / "val200.txt").read_text())
    return tmp_path


def vtab_cfg(root: Path, *extra: str):
    return load_config(None, ["data.name=vtab", f"data.root={root / 'data'}", "data.task=task", "data.num_workers=0",
                              f"output_dir={root / 'runs'}", *extra])


def bundle(cfg, size=IMG):
    return build_datasets(cfg, size, 3, HALF, HALF)


@pytest.fixture
def opens(monkeypatch):
    """Counts the images ImageList decodes."""
    count = {"n": 0}
    real = image_folder.load_image

    def counting(path):
        count["n"] += 1
        return real(path)

    monkeypatch.setattr(image_folder, "load_image", counting)
    return count


def test_unit_float_is_to_tensor_bit_for_bit():
    every = np.arange(256, dtype=np.uint8).reshape(16, 16)
    reference = T.ToTensor()(Image.fromarray(np.stack([every] * 3, -1)))
    as_uint8 = torch.from_numpy(np.stack([every] * 3))
    assert torch.equal(unit_float(as_uint8), reference)
    floats = torch.rand(2, 3, 4, 4)
    assert unit_float(floats) is floats  # already float: untouched
    # on CUDA a table lookup (CUDA divides by a scalar through its reciprocal): the table is ToTensor's values,
    # and the lookup runs on a fake CUDA device without a device mismatch or a host read
    from torch._subclasses.fake_tensor import FakeTensorMode

    from nvpt.data.cache import _UNIT
    assert torch.equal(torch.tensor(_UNIT, dtype=torch.float32), reference[0].flatten())
    with FakeTensorMode():
        on_device = unit_float(torch.empty(2, 3, 8, 8, dtype=torch.uint8, device="cuda"))
        assert on_device.device.type == "cuda" and on_device.dtype == torch.float32


@pytest.mark.parametrize("protocol", ["tune", "final"])
def test_cached_images_equal_the_decoded_ones(vtab_root, protocol):
    cfg = vtab_cfg(vtab_root, f"data.protocol={protocol}")
    data = bundle(cfg)
    for split in (data.train, data.val, data.test):
        if split is None:
            continue
        cached = cached_dataset(split, cfg)
        assert isinstance(cached, CachedImages) and cached.path.parent == vtab_root / "runs" / "data-cache"
        assert len(cached) == len(split)
        for i in range(len(split)):
            image, label = cached[i]
            expected, expected_label = split[i]
            assert image.dtype == torch.uint8 and label == expected_label
            assert torch.equal(unit_float(image), expected)  # same dtype, same rounding, every pixel


def test_second_build_opens_no_image_and_changes_make_a_new_cache(vtab_root, opens):
    cfg = vtab_cfg(vtab_root, "data.protocol=tune")
    first = cached_dataset(bundle(cfg).test, cfg)
    assert opens["n"] == 5 + 1  # every image once (the first twice: its shape)
    again = cached_dataset(bundle(cfg).test, cfg)
    assert opens["n"] == 6  # the cache file was reused: nothing decoded
    assert again.path == first.path and np.array_equal(np.asarray(again.images), np.asarray(first.images))

    bigger = cached_dataset(bundle(cfg, size=IMG + 8).test, cfg)  # another size: another cache
    assert bigger.path != first.path and bigger.images.shape[-1] == IMG + 8
    assert opens["n"] == 6 + 6

    changed = vtab_root / "data" / "task" / "images" / "11.png"
    noisy_image(changed, 99, size=(40, 40))  # a changed file (size and mtime): another cache, the new pixels
    data = bundle(cfg)
    renewed = cached_dataset(data.test, cfg)
    assert renewed.path not in (first.path, bigger.path)
    assert torch.equal(unit_float(renewed[2][0]), data.test[2][0])
    assert not torch.equal(renewed[2][0], first[2][0])
    listed = (vtab_root / "data" / "task" / "test.txt").read_text().splitlines()
    (vtab_root / "data" / "task" / "test.txt").write_text("\n".join(listed[:4]) + "\n")  # a changed file list
    shorter = cached_dataset(bundle(cfg).test, cfg)
    assert len(shorter) == 4 and shorter.path not in (first.path, bigger.path, renewed.path)


def _build_in_child(args):
    root, barrier = args
    decoded = {"n": 0}
    real = image_folder.load_image

    def counting(path):
        decoded["n"] += 1
        return real(path)

    image_folder.load_image = counting
    cfg = vtab_cfg(Path(root), "data.protocol=tune")
    data = bundle(cfg)
    barrier.wait()  # every process starts building at once
    cached = cached_dataset(data.test, cfg)
    return decoded["n"], str(cached.path), np.asarray(cached.images).tobytes()


def test_concurrent_builders_decode_once_and_share_one_file(vtab_root):
    context = multiprocessing.get_context("fork")
    with context.Manager() as manager:
        barrier = manager.Barrier(3)
        with context.Pool(3) as pool:
            results = pool.map(_build_in_child, [(str(vtab_root), barrier)] * 3)
    decodes = sorted(n for n, _, _ in results)
    assert decodes == [0, 0, 5 + 1]  # one process decoded, two waited for it and read its file
    assert len({path for _, path, _ in results}) == 1 and len({blob for _, _, blob in results}) == 1
    cfg = vtab_cfg(vtab_root, "data.protocol=tune")
    data = bundle(cfg)
    cached = cached_dataset(data.test, cfg)
    assert all(torch.equal(unit_float(cached[i][0]), data.test[i][0]) for i in range(5))
    folder = vtab_root / "runs" / "data-cache"
    assert sorted(p.suffix for p in folder.iterdir()) == [".lock", ".npy"]  # no temporary file left


def test_memory_cache_falls_back_to_disk_above_its_bound(vtab_root):
    small = vtab_cfg(vtab_root, "data.protocol=tune", "data.cache=memory")
    in_memory = cached_dataset(bundle(small).test, small)
    assert in_memory.path is None and not (vtab_root / "runs" / "data-cache").exists()
    big = vtab_cfg(vtab_root, "data.protocol=tune", "data.cache=memory", "data.cache_memory_gb=0.000001")  # 1 KB
    on_disk = cached_dataset(bundle(big).test, big)
    assert on_disk.path is not None and on_disk.path.is_file() and isinstance(on_disk.images, np.memmap)
    assert np.array_equal(np.asarray(on_disk.images), in_memory.images)
    # the textures' crops have no file list or array to key a disk cache: memory under the bound, uncached above it
    textures = ["data.name=textures", "data.crop_size=32", "data.train_per_class=2", "data.test_per_class=2",
                "data.num_workers=0", f"output_dir={vtab_root / 'runs2'}"]
    cfg = load_config(None, textures)
    test = bundle(cfg).test
    assert isinstance(cached_dataset(test, cfg), CachedImages)
    cfg = load_config(None, [*textures, "data.cache_memory_gb=0.000001"])
    assert cached_dataset(test, cfg) is test and not (vtab_root / "runs2").exists()


def test_random_transforms_and_off_are_not_cached(vtab_root):
    cfg = vtab_cfg(vtab_root, "data.protocol=tune", "data.transform=fgvc")
    data = bundle(cfg)
    assert not deterministic(data.train) and cached_dataset(data.train, cfg) is data.train  # random resized crops
    assert deterministic(data.test) and isinstance(cached_dataset(data.test, cfg), CachedImages)  # centre crop
    off = vtab_cfg(vtab_root, "data.protocol=tune", "data.cache=off")
    assert cached_dataset(data.test, off) is data.test


def test_loaders_read_a_cached_set_in_process_and_keep_decoding_workers(vtab_root):
    cfg = vtab_cfg(vtab_root, "data.protocol=tune", "data.num_workers=2")
    data = bundle(cfg)
    cpu = torch.device("cpu")
    cached = make_loader(data.train, 4, cfg, DistInfo(), True, cpu)
    assert cached.num_workers == 0 and isinstance(cached.dataset, CachedImages)
    uncached = make_loader(data.train, 4, cfg, DistInfo(), True, cpu, cache=False)
    assert uncached.num_workers == 2 and uncached.persistent_workers  # deterministic: workers are not forked again
    for epoch in (0, 1):  # the same batches, in the same order, from one read per batch
        cached.sampler.set_epoch(epoch)
        uncached.sampler.set_epoch(epoch)
        pairs = list(zip(cached, uncached, strict=True))
        assert [len(a[0]) for a, _ in pairs] == [4, 2]
        for (images, labels), (expected, expected_labels) in pairs:
            assert images.dtype == torch.uint8 and torch.equal(unit_float(images), expected)
            assert torch.equal(labels, expected_labels)
    test = make_loader(data.test, 3, cfg, DistInfo(), False, cpu)
    (images, labels, ids), (rest, _, more) = list(test)
    assert images.shape == (3, 3, IMG, IMG) and ids.tolist() == [0, 1, 2] and more.tolist() == [3, 4]
    fgvc = vtab_cfg(vtab_root, "data.protocol=tune", "data.num_workers=2", "data.transform=fgvc")
    random = make_loader(bundle(fgvc).train, 4, fgvc, DistInfo(), True, cpu)
    assert random.num_workers == 2 and not random.persistent_workers  # reseeded per epoch for exact resume


@pytest.mark.parametrize("data", ["vtab", "textures"])
def test_a_run_with_the_cache_equals_one_without(vtab_root, data):
    from nvpt.pipeline import run_training

    if data == "vtab":
        args = [f"data.root={vtab_root / 'data'}", "data.name=vtab", "data.task=task", "data.protocol=tune"]
    else:
        args = ["data.name=textures", "data.crop_size=32", "data.train_per_class=3", "data.test_per_class=3"]
    args += ["prompt.method=vpt_deep", "train.epochs=2", "train.warmup_epochs=1", "data.batch_size=4",
             "data.num_workers=0", "model.num_classes=null", "eval.gaussian_std=[0.2]", "train.threads=1",
             f"output_dir={vtab_root / 'runs'}"]
    results = {}
    for cache in ("off", "auto"):
        results[cache] = run_training(tiny_cfg(*args, f"data.cache={cache}", f"run_name={cache}"),
                                      log=lambda _: None, show_progress=False)
    strip = [[{k: v for k, v in line.items() if k != "epoch_time_s"} for line in r.history] for r in results.values()]
    assert strip[0] == strip[1]
    assert results["off"].summary["clean"] == results["auto"].summary["clean"]
    assert results["off"].summary["sets"] == results["auto"].summary["sets"]
    assert (vtab_root / "runs" / "data-cache").is_dir() == (data == "vtab")  # files: disk; textures: memory
