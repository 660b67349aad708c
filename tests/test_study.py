"""The study's commands stay stable: the textures experiment on any image folder, eval.split=val, the
backbone switches (model.pretrained_file=null, data.grayscale), and the sweep table that picks a point."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import run_tool
from nvpt.config import load_config
from nvpt.pipeline import run_training

ROOT = Path(__file__).resolve().parent.parent
TEXTURES = ROOT / "configs" / "experiments" / "textures.yaml"
# the experiment's task and evaluation, trained for one short epoch
QUICK = ["train.epochs=1", "train.warmup_epochs=0", "train.threads=1", "data.num_workers=0",
         "eval.corruptions=[gaussian_noise]", "eval.severities=[3]", "eval.gaussian_std=[0.1]"]


def make_folder(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for split, count in (("train", 6), ("test", 3)):
        for label, tone in (("bright", 200), ("dark", 50)):
            folder = root / split / label
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = np.clip(rng.normal(tone, 20, (40, 40, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


def test_textures_experiment_runs_on_any_image_folder(tmp_path):
    folder = make_folder(tmp_path / "images")
    cfg = load_config(TEXTURES, QUICK + ["data.name=image_folder", f"data.root={folder}", f"output_dir={tmp_path}",
                                         "run_name=folder"])
    result = run_training(cfg, show_progress=False)
    summary = json.loads((result.run_dir / "results.json").read_text())
    assert summary["images"]["test"] == 6 and summary["split"] == "test"
    assert {"clean", "mean_corrupted"} <= summary.keys() and len(summary["sets"]) == 2


def test_eval_split_val_evaluates_validation_crops_only(tmp_path):
    common = QUICK + ["data.val_per_class=3", "data.test_per_class=5", f"output_dir={tmp_path}",
                      "prompt.method=linear"]
    val = run_training(load_config(TEXTURES, common + ["eval.split=val", "run_name=val"]), show_progress=False)
    test = run_training(load_config(TEXTURES, common + ["run_name=test"]), show_progress=False)
    # the same training (same seed, same crops), evaluated on 20 x 3 validation or 20 x 5 test crops
    assert val.summary["split"] == "val" and test.summary["split"] == "test"
    untimed = [[{k: v for k, v in line.items() if k != "epoch_time_s"} for line in run.history] for run in (val, test)]
    assert untimed[0] == untimed[1]
    assert val.summary["sets"].keys() == test.summary["sets"].keys()
    correct_val = round(val.summary["clean"] * 60 / 100)
    assert abs(val.summary["clean"] - 100 * correct_val / 60) < 0.01  # a share of 60 images, not of 100
    assert val.summary["best_val_acc"] == pytest.approx(val.summary["clean"], abs=0.01)  # same crops, same weights


def test_backbone_switches_stay_stable():
    cfg = load_config(TEXTURES)
    assert cfg.model.pretrained_file == "nvpt/assets/demo_backbone.safetensors" and cfg.data.grayscale
    assert load_config(TEXTURES, ["model.pretrained_file=null"]).model.pretrained_file is None
    colour = load_config(ROOT / "configs" / "experiments" / "textures_color.yaml")
    assert not colour.data.grayscale and colour.data.train_per_class == cfg.data.train_per_class
    for method in ("spike_nvpt", "vpt_deep"):  # each method's tuned recipe, the same on colour
        gray = load_config(ROOT / "configs" / "experiments" / f"textures_{method}.yaml")
        color = load_config(ROOT / "configs" / "experiments" / f"textures_color_{method}.yaml")
        assert gray.prompt.method == color.prompt.method == method and not color.data.grayscale
        assert (gray.train.base_lr, gray.train.epochs, gray.prompt.length) == \
            (color.train.base_lr, color.train.epochs, color.prompt.length)


def comparison(clean: list[float], mca: list[float], method: str) -> dict:
    from nvpt.robustness.compare import compare_runs

    runs = [{"seed": s, "clean": c, "sets": {"gaussian@0.1": {"accuracy": m}}, "mean_corrupted": m,
             "corruptions": {}} for s, (c, m) in enumerate(zip(clean, mca))]
    return compare_runs({method: runs}, reference=method)


def test_sweep_table_picks_the_best_point(tmp_path, monkeypatch, capsys):
    points = {"lr1": ([90, 92, 91], [40, 41, 42]), "lr4": ([93, 94, 95], [30, 31, 32])}
    files = []
    for name, (clean, mca) in points.items():
        path = tmp_path / "spike_nvpt" / name / "comparison.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(comparison(clean, mca, "spike_nvpt")))
        files.append(path)
    rc, out, _ = run_tool(monkeypatch, capsys, "sweep_table", *files, "--print-best", "point")
    assert rc == 0 and out.strip() == "lr4"  # best clean
    rc, out, _ = run_tool(monkeypatch, capsys, "sweep_table", *files, "--by", "mca", "--print-best", "point")
    assert rc == 0 and out.strip() == "lr1"  # best mCA
    rc, out, _ = run_tool(monkeypatch, capsys, "sweep_table", *files, "--out", tmp_path / "sweep.md")
    assert "| **lr4** |" in out and (tmp_path / "sweep.md").read_text() == out
    rc, _, err = run_tool(monkeypatch, capsys, "sweep_table", tmp_path / "missing.json")
    assert rc == 2 and err.startswith("error: cannot read")


def test_sweep_table_applies_the_protocols_rule(tmp_path, monkeypatch, capsys):
    """Highest mCA among the rows within reach of a clean floor; the best clean row when none is."""
    from nvpt.robustness.compare import compare_runs

    def runs(clean, mca):
        return [{"seed": s, "clean": c, "sets": {"gaussian@0.1": {"accuracy": m}}, "mean_corrupted": m,
                 "corruptions": {}} for s, (c, m) in enumerate(zip(clean, mca))]

    comp = compare_runs({"vpt_deep": runs([96, 97, 98], [40, 40, 40]), "a": runs([95, 96, 97], [41, 42, 43]),
                         "b": runs([90, 91, 92], [50, 50, 50]), "c": runs([94, 94, 94], [45, 45, 45])})
    path = tmp_path / "variants" / "comparison.json"
    path.parent.mkdir()
    path.write_text(json.dumps(comp))
    args = [path, "--by", "mca", "--exclude", "vpt_deep", "--print-best", "row"]
    rc, out, _ = run_tool(monkeypatch, capsys, "sweep_table", *args, "--min-clean", "95.5")
    assert rc == 0 and json.loads(out)["method"] == "a"  # b has the best mCA but is 6 points short on clean
    rc, out, _ = run_tool(monkeypatch, capsys, "sweep_table", *args, "--min-clean", "93.5")
    assert json.loads(out)["method"] == "c"
    rc, out, _ = run_tool(monkeypatch, capsys, "sweep_table", *args, "--min-clean", "99")
    assert json.loads(out)["method"] == "a"  # nobody within reach: the best clean accuracy
