"""The paper-scale benchmark: VTAB-1k's 19 task configs and the 5 FGVC ones on tiny fixtures in their released
layouts (tests/benchmark_layouts.py), the FGVC JSON split reader, the grid and its selection rule, the plan with
its estimate, and an end-to-end `--benchmark` run whose tables hold the three group means.

Every one of the 24 configs trains one epoch and evaluates through tools/train.py with the tiny ViT (32 px,
a handful of 8-px images per split): about 0.2 s each on one core."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from benchmark_layouts import write_fgvc, write_vtab1k
from conftest import TINY, run_tool
from nvpt.config import load_config
from nvpt.cost import image_counts
from nvpt.data import build_datasets
from nvpt.errors import NVPTError
from nvpt.suites import FGVC, GROUPS, VTAB, choose, grid, suite

ROOT = Path(__file__).resolve().parent.parent
TINY_MODEL = [o for o in TINY if not o.startswith("model.num_classes=")]
QUICK = [*TINY_MODEL, "data.num_workers=0", "train.epochs=1", "train.warmup_epochs=0", "train.threads=1",
         "data.batch_size=4", "eval.gaussian_std=[0.2]", "eval.corruptions=[]"]
# VTAB-1k's task folders and class counts, in the order the issue lists them
ISSUE_TASKS = ("caltech101 cifar dtd oxford_flowers102 oxford_iiit_pet svhn sun397 patch_camelyon eurosat resisc45 "
               "diabetic_retinopathy clevr_count clevr_dist dmlab kitti dsprites_loc dsprites_ori smallnorb_azi "
               "smallnorb_ele").split()
ISSUE_CLASSES = (102, 100, 47, 102, 37, 10, 397, 2, 10, 45, 5, 8, 6, 6, 4, 16, 16, 18, 9)
CONFIGS = sorted((ROOT / "configs" / "vtab").glob("*.yaml")) + sorted((ROOT / "configs" / "fgvc").glob("*.yaml"))


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """Both layouts under one root: VTAB-1k task folders and the FGVC data set folders."""
    root = tmp_path_factory.mktemp("benchmark")
    write_vtab1k(root)
    write_fgvc(root)
    return root


def test_configs_cover_both_benchmarks():
    vtab = {p.stem: load_config(p) for p in (ROOT / "configs" / "vtab").glob("*.yaml")}
    assert sorted(vtab) == sorted(ISSUE_TASKS) and list(VTAB) == ISSUE_TASKS
    for task, classes in zip(ISSUE_TASKS, ISSUE_CLASSES):
        cfg = vtab[task]
        assert (cfg.data.name, cfg.data.task, cfg.model.num_classes) == ("vtab", task, classes) == (
            "vtab", task, VTAB[task].classes)
        assert cfg.data.transform == "vtab" and cfg.data.batch_size == 128 and cfg.train.optimizer == "sgd"
        assert cfg.data.mean == [0.485, 0.456, 0.406] and cfg.train.warmup_epochs == 10 and cfg.train.epochs == 100
    assert [sum(t.group == g for t in VTAB.values()) for g in GROUPS] == [7, 4, 8]
    fgvc = {p.stem: load_config(p) for p in (ROOT / "configs" / "fgvc").glob("*.yaml")}
    assert sorted(fgvc) == sorted(FGVC) == sorted(["cub", "nabirds", "oxford_flowers", "stanford_dogs", "stanford_cars"])
    assert {n: (c.data.name, c.data.task, c.model.num_classes, c.data.transform) for n, c in fgvc.items()} == {
        "cub": ("fgvc", "cub", 200, "fgvc"), "nabirds": ("fgvc", "nabirds", 555, "fgvc"),
        "oxford_flowers": ("fgvc", "oxford_flowers", 102, "fgvc"), "stanford_dogs": ("fgvc", "stanford_dogs", 120, "fgvc"),
        "stanford_cars": ("fgvc", "stanford_cars", 196, "fgvc")}
    assert [t for t, _ in suite("all")] == ISSUE_TASKS + list(FGVC)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_config_trains_and_evaluates(config, data_root, tmp_path, monkeypatch, capsys):
    rc, _, err = run_tool(monkeypatch, capsys, "train", config, f"data.root={data_root}", *QUICK,
                          f"output_dir={tmp_path}")
    assert rc == 0, err
    (run,) = [p for p in tmp_path.iterdir() if p.name != "data-cache"]  # the decode-once cache sits beside runs
    result = json.loads((run / "results.json").read_text())
    assert result["images"]["test"] == 3 and set(result["sets"]) == {"gaussian@0.2"}
    assert result["images"]["train"] == (4 if config.parent.name == "fgvc" else 6)  # fgvc final: train.json alone
    saved = load_config(run / "config.yaml")
    expected = VTAB[config.stem].classes if config.parent.name == "vtab" else FGVC[config.stem].classes
    assert saved.model.num_classes == expected


def _fgvc(root, *extra):
    cfg = load_config(ROOT / "configs/fgvc/cub.yaml", [f"data.root={root}", *TINY_MODEL, *extra])
    return build_datasets(cfg, 32, 3, (0.5,) * 3, (0.5,) * 3)


def test_fgvc_reads_the_reference_json_splits(tmp_path):
    write_fgvc(tmp_path, ["cub"], sizes=(6, 3, 4))
    folder = tmp_path / "CUB_200_2011"
    tune = _fgvc(tmp_path, "data.protocol=tune")
    assert (len(tune.train), len(tune.val), len(tune.test)) == (6, 3, 4)
    # class ids 1, 2 and 200 in the files become 0, 1, 2 (sorted), the images sit under images/
    assert tune.num_classes == 3 and sorted({label for _, label in tune.train.samples}) == [0, 1, 2]
    assert all(str(p).startswith(str(folder / "images")) for p, _ in tune.test.samples)
    final = _fgvc(tmp_path)
    assert final.val is None and len(final.train) == 6 and tune.mean == (0.485, 0.456, 0.406)
    image, label = final.test[0]
    assert image.shape == (3, 32, 32) and label == 0

    anno = json.loads((folder / "test.json").read_text())
    (folder / "test.json").write_text(json.dumps({**anno, "999.x/none.jpg": 1}))
    with pytest.raises(NVPTError, match=r"test.json names .*none.jpg, which does not exist"):
        _fgvc(tmp_path)
    (folder / "test.json").write_text(json.dumps({next(iter(anno)): 77}))
    with pytest.raises(NVPTError, match=r"test.json uses class ids \[77\] that train.json never does"):
        _fgvc(tmp_path)
    (folder / "test.json").write_text("{not json")
    with pytest.raises(NVPTError, match=r"test.json is not valid JSON"):
        _fgvc(tmp_path)
    (folder / "test.json").write_text(json.dumps([1, 2]))
    with pytest.raises(NVPTError, match=r"must be a non-empty JSON object"):
        _fgvc(tmp_path)
    (folder / "test.json").unlink()
    with pytest.raises(NVPTError, match=r"split file .*test.json not found"):
        _fgvc(tmp_path)
    with pytest.raises(NVPTError, match=r"torchvision cannot download CUB-200-2011"):
        _fgvc(tmp_path, "data.download=true")
    with pytest.raises(NVPTError, match=r"unknown data.task 'birds'"):
        _fgvc(tmp_path, "data.task=birds")


def test_grid_and_selection_rule():
    assert len(grid("spike_nvpt")) == 28 and grid("vpt_deep")[0] == (5.0, 0.01) and grid("spike_nvpt")[-1] == (0.05, 0.0)
    assert len(grid("full")) == 16 and max(lr for lr, _ in grid("full")) == 0.005
    assert grid("linear", [0.3], [0]) == [(0.3, 0.0)]
    rows = [{"base_lr": 1.0, "weight_decay": 0.0, "val": 50.0}, {"base_lr": 0.5, "weight_decay": 0.0, "val": 60.0},
            {"base_lr": 0.1, "weight_decay": 0.0, "val": 60.0}]
    assert choose(rows) is rows[1]  # the highest val; a tie goes to the first point of the grid
    with pytest.raises(NVPTError, match="learning rates > 0"):
        grid("linear", [0.0])
    with pytest.raises(NVPTError, match="unknown benchmark 'imagenet'"):
        suite("imagenet")


def test_estimate_counts_placed_lists_else_the_released_sizes(tmp_path):
    cfg = load_config(ROOT / "configs/vtab/kitti.yaml", [f"data.root={tmp_path}"])
    assert image_counts(cfg) == (1000, 0, 711)  # not placed: VTAB-1k's sizes
    write_vtab1k(tmp_path, ["kitti"])
    assert image_counts(cfg) == (6, 0, 3)
    fgvc = load_config(ROOT / "configs/fgvc/nabirds.yaml", [f"data.root={tmp_path}", "data.protocol=tune"])
    assert image_counts(fgvc) == (21536, 2393, 24633)
    write_fgvc(tmp_path, ["nabirds"])
    assert image_counts(fgvc) == (4, 2, 3)


def run_paper(monkeypatch, capsys, *argv):
    return run_tool(monkeypatch, capsys, "reproduce_paper", *argv)


def test_estimate_only_prints_the_whole_plan_with_the_grid(tmp_path, monkeypatch, capsys):
    rc, out, err = run_paper(monkeypatch, capsys, "--benchmark", "all", "--estimate-only", "--out", tmp_path / "b")
    assert rc == 0, err
    assert "spike_nvpt: base_lr {5, 2.5, 1, 0.5, 0.25, 0.1, 0.05} x weight_decay {0.01, 0.001, 0.0001, 0} = 28 runs" in out
    assert "full: base_lr {0.005, 0.001, 0.0005, 0.0001} x weight_decay {0.01, 0.001, 0.0001, 0} = 16 runs" in out
    for task in ISSUE_TASKS + list(FGVC):
        assert f"| {task} | " in out
    assert "| kitti | Structured | 0 / 100 | — | 0 / 12 |" in out and "| cub | FGVC | 0 / 100 | — | 0 / 12 |" in out
    assert f"total ({24 * (100 + 12)} runs)" in out and "Estimated time still to spend" in out and "checkpoint writes" in out
    assert not (tmp_path / "b").exists()
    for args, message in ((["--benchmark", "vtab", "--tasks", "cub"], "unknown task 'cub' for --benchmark vtab"),
                          (["--benchmark", "vtab", "--grid-lrs", "-1"], "learning rates > 0"),
                          (["--grid-wds", "0"], "--grid-lrs and --grid-wds need --benchmark"),
                          (["--benchmark", "fgvc", "--tables-only"], "no finished task under")):
        rc, _, err = run_paper(monkeypatch, capsys, *args, "--out", tmp_path / "b")
        assert rc == 2 and err.startswith("error: ") and message in err, err
    assert not (tmp_path / "b").exists()


def test_benchmark_end_to_end_chooses_on_val_and_writes_the_tables(data_root, tmp_path, monkeypatch, capsys):
    out = tmp_path / "bench"
    tasks = ["dtd", "eurosat", "kitti", "cub"]  # one task of each VTAB-1k group, one FGVC data set
    args = ["--benchmark", "all", "--tasks", *tasks, "--methods", "linear", "vpt_deep", "--seeds", "2",
            "--grid-lrs", "0.5", "0.01", "--grid-wds", "0", "--out", out, f"data.root={data_root}", *QUICK]
    rc, first, err = run_paper(monkeypatch, capsys, *args)
    assert rc == 0, err
    assert first.index("Estimated time still to spend") < first.index("training")
    assert "linear: base_lr {0.5, 0.01} x weight_decay {0} = 2 runs" in first
    assert "| dtd | Natural | 0 / 4 | — | 0 / 4 |" in first

    selection = json.loads((out / "kitti" / "selection.json").read_text())
    assert json.loads((out / "compare-kitti" / "comparison.json").read_text())["selection"] == selection
    for method, chosen in selection.items():
        vals = {(r["base_lr"], r["weight_decay"]): r["val"] for r in chosen["grid"]}
        assert len(vals) == 2 and chosen["val"] == max(vals.values())
        grid_run = json.loads((out / "grid" / f"kitti-{method}-lr{chosen['base_lr']:g}-wd0" / "results.json").read_text())
        assert grid_run["split"] == "val" and grid_run["images"]["val"] == 2 and grid_run["sets"] == {}  # test untouched
        final = load_config(out / f"kitti-{method}-s1" / "config.yaml")
        assert (final.train.base_lr, final.train.weight_decay, final.data.protocol, final.seed) == (
            chosen["base_lr"], 0.0, "final", 1)

    md = (out / "benchmark.md").read_text()
    for column in ("dtd", "eurosat", "kitti", "**Natural**", "**Specialized**", "**Structured**", "**VTAB-1k mean**",
                   "cub", "**FGVC mean**"):
        assert column in md
    comps = {t: json.loads((out / f"compare-{t}" / "comparison.json").read_text()) for t in tasks}
    rows = {(r["column"], r["method"], r["metric"]): r for r in csv.DictReader((out / "benchmark.csv").open())}
    for method in ("linear", "vpt_deep"):
        for metric, key in (("clean", "clean"), ("mCA", "mean_corrupted")):
            per_seed = [[comps[t]["accuracy"][method][key]["values"][s] for t in ("dtd", "eurosat", "kitti")] for s in (0, 1)]
            overall = sum(sum(seed) / 3 for seed in per_seed) / 2  # one task per group: the mean of the three
            assert float(rows[("VTAB-1k mean", method, metric)]["mean"]) == pytest.approx(overall)
            assert float(rows[("Structured", method, metric)]["mean"]) == pytest.approx(
                comps["kitti"]["accuracy"][method][key]["mean"])
        assert float(rows[("kitti", method, "clean")]["base_lr"]) == selection[method]["base_lr"]
    gain = rows[("VTAB-1k mean", "linear", "clean")]
    per_seed_gain = [sum(comps[t]["gain"]["linear"]["clean"]["values"][s] for t in ("dtd", "eurosat", "kitti")) / 3
                     for s in (0, 1)]
    assert float(gain["gain"]) == pytest.approx(sum(per_seed_gain) / 2) and gain["gain_ci95_low"] != ""
    assert "| linear | clean | " in md and "## Hyper-parameters chosen on the validation split" in md
    assert f"| kitti | {selection['linear']['base_lr']:g} / 0 ({selection['linear']['val']:.1f})" in md
    assert (out / "benchmark.png").stat().st_size > 0 and (out / "benchmark.pdf").is_file()

    # resumable: everything is reused; --tables-only rewrites the same tables
    rc, again, err = run_paper(monkeypatch, capsys, *args, "--estimate-only")
    assert rc == 0, err
    assert "| dtd | Natural | 4 / 4 | linear lr" in again and "| 4 / 4 | 0.0 h |" in again
    (out / "benchmark.md").unlink()
    rc, _, err = run_paper(monkeypatch, capsys, *args, "--tables-only")
    assert rc == 0 and (out / "benchmark.md").read_text().split("\n", 3)[3] == md.split("\n", 3)[3]
    assert math.isfinite(float(rows[("FGVC mean", "vpt_deep", "clean")]["mean"]))


def test_fgvc_split_files_from_torchvision(tmp_path, monkeypatch):
    """Oxford Flowers through torchvision (official splits, placed so nothing downloads; its MD5 table set to the
    fixture's .mat files) and Stanford Cars from torchvision's layout: the JSON files are written beside them."""
    import torchvision.datasets as tvd

    import torchvision_layouts as layouts

    flowers = tmp_path / "OxfordFlower"
    sums = layouts.write_flowers102(flowers, per_class=(2, 1, 1))
    for key, name in (("label", "imagelabels.mat"), ("setid", "setid.mat")):
        monkeypatch.setitem(tvd.Flowers102._file_dict, key, (name, sums[name]))
    cfg = load_config(ROOT / "configs/fgvc/oxford_flowers.yaml",
                      [f"data.root={tmp_path}", "data.download=true", "data.protocol=tune", *TINY_MODEL])
    bundle = build_datasets(cfg, 32, 3, (0.5,) * 3, (0.5,) * 3)
    assert (len(bundle.train), len(bundle.val), len(bundle.test), bundle.num_classes) == (204, 102, 102, 102)
    test = json.loads((flowers / "test.json").read_text())
    assert len(test) == 102 and all(k.startswith("flowers-102/jpg/image_") for k in test)
    assert sorted(test.values()) == list(range(102))

    layouts.write_stanford_cars(tmp_path / "Stanford-cars", classes=4, train_per_class=10, test_per_class=2)
    cfg = load_config(ROOT / "configs/fgvc/stanford_cars.yaml",
                      [f"data.root={tmp_path}", "data.download=true", "data.protocol=tune", *TINY_MODEL])
    bundle = build_datasets(cfg, 32, 3, (0.5,) * 3, (0.5,) * 3)
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (36, 4, 8)  # 10 % of each class to val.json
    train, val = (json.loads((tmp_path / "Stanford-cars" / f"{s}.json").read_text()) for s in ("train", "val"))
    assert not set(train) & set(val) and sorted(set(val.values())) == [0, 1, 2, 3]
    assert all(k.startswith("stanford_cars/cars_train/") for k in train)
    with pytest.raises(NVPTError, match=r"stanford_cars: no train.json/val.json/test.json in .*torchvision cannot download"):
        build_datasets(load_config(ROOT / "configs/fgvc/stanford_cars.yaml",
                                   [f"data.root={tmp_path / 'none'}", "data.download=true", *TINY_MODEL]),
                       32, 3, (0.5,) * 3, (0.5,) * 3)
