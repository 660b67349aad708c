"""Accuracy-robustness fronts (nvpt/robustness/fronts.py, tools/fronts.py) on synthetic numbers with known answers."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import run_tool
from nvpt.config import CORRUPTIONS
from nvpt.errors import NVPTError
from nvpt.robustness.compare import compare_runs
from nvpt.robustness.fronts import (effective_robustness, expit, fit_front, fit_fronts, front_rows, front_se,
                                    fronts_markdown, logit, pick_setting, predict, robust_accuracies, sweep_settings)
from nvpt.robustness.report import t_critical_95

SLOPE, INTERCEPT = 0.8, -2.0  # the true front in logit space


def on_line(clean: float) -> float:
    return expit(SLOPE * logit(clean) + INTERCEPT)


def setting(method, lr, length, clean, noise, suite=None):
    return {"method": method, "lr": lr, "length": length, "seeds": list(range(len(clean))), "clean": clean,
            "noise": noise, "suite": suite}


def front_settings():
    """VPT-deep settings whose seed means lie exactly on the line (each seed on it too)."""
    out = []
    for lr, cleans in ((0.25, [90.0, 91.0, 92.0]), (1.0, [93.0, 94.0, 95.0]), (4.0, [96.0, 96.5, 97.0])):
        out.append(setting("vpt_deep", lr, 8, cleans, [on_line(c) for c in cleans]))
    return out


def test_fit_recovers_a_logit_line():
    points = [(c, on_line(c)) for c in (80.0, 88.0, 93.0, 97.0)]
    front = fit_front(points)
    assert front["slope"] == pytest.approx(SLOPE) and front["intercept"] == pytest.approx(INTERCEPT)
    assert front["resid_sd"] == pytest.approx(0.0, abs=1e-9) and front["df"] == 2
    assert predict(front, 90.0) == pytest.approx(on_line(90.0))
    assert logit(expit(1.3)) == pytest.approx(1.3) and math.isfinite(logit(100.0)) and math.isfinite(logit(0.0))


def test_effective_robustness_is_zero_on_the_front_and_the_shift_off_it():
    fronts = fit_fronts(front_settings())
    assert fronts["suite"] is None  # not evaluated
    front = fronts["noise"]
    assert front["slope"] == pytest.approx(SLOPE, rel=1e-3)  # seed means of points on a curved line: close, not exact
    on = setting("spike_nvpt", 1.0, 32, [92.0, 94.0, 95.0], [predict(front, c) for c in (92.0, 94.0, 95.0)])
    er = effective_robustness(on, "noise", front)
    assert er["mean"] == pytest.approx(0.0, abs=1e-9)
    shifts = [2.0, 3.0, 4.0]  # points off the front by a known amount per seed
    off = setting("spike_nvpt", 1.0, 32, [92.0, 94.0, 95.0], [predict(front, c) + d for c, d in zip((92.0, 94.0, 95.0), shifts)])
    er = effective_robustness(off, "noise", front)
    assert er["mean"] == pytest.approx(3.0) and er["values"] == pytest.approx(shifts)
    # the front is (nearly) exact, so the interval is the seeds' t-interval: 3 +- t(2) * 1 / sqrt(3)
    se_front = front_se(front, 93.667)
    assert se_front < 0.05
    half = t_critical_95(2) * math.sqrt(1 / 3 + se_front ** 2)
    assert er["ci95_low"] == pytest.approx(3.0 - half, abs=1e-6) and er["ci95_high"] == pytest.approx(3.0 + half, abs=1e-6)


def test_the_fronts_own_error_widens_the_interval():
    """A scattered front: its standard error at its centre is resid_sd / sqrt(m) in logit units (delta method to %)."""
    xs = [88.0, 90.0, 92.0, 94.0, 96.0]
    bumps = [0.2, -0.2, 0.2, -0.2, 0.0]  # logit residuals
    points = [(c, expit(SLOPE * logit(c) + INTERCEPT + b)) for c, b in zip(xs, bumps)]
    front = fit_front(points)
    assert front["resid_sd"] > 0.1
    centre = expit(front["x_mean"])
    p = predict(front, centre) / 100
    assert front_se(front, centre) == pytest.approx(100 * p * (1 - p) * front["resid_sd"] / math.sqrt(5))
    assert front_se(front, 97.0) > front_se(front, centre)  # wider away from the points
    same_seeds = setting("spike_nvpt", 1.0, 32, [centre] * 3, [predict(front, centre) + d for d in (2.0, 3.0, 4.0)])
    er = effective_robustness(same_seeds, "noise", front)
    exact = effective_robustness(same_seeds, "noise", {**front, "resid_sd": 1e-12})
    assert er["mean"] == pytest.approx(3.0) and er["ci95_high"] - er["ci95_low"] > exact["ci95_high"] - exact["ci95_low"]
    # with a single seed or a 2-point front there is no interval, never a narrower one
    assert effective_robustness(setting("s", 1.0, 8, [90.0], [50.0]), "noise", front)["ci95_low"] is None
    two = fit_front(points[:2])
    assert two["resid_sd"] is None and effective_robustness(same_seeds, "noise", two)["ci95_low"] is None


def test_robust_measures_split_the_noise_sets_from_the_suite():
    sets = {f"{name}@{s}": 10.0 * (i % 3) for i, name in enumerate(CORRUPTIONS) for s in (1, 5)}
    sets["gaussian@0.1"] = 90.0
    got = robust_accuracies(sets)
    noise = [sets[k] for k in sets if k.split("@")[0] in ("gaussian_noise", "shot_noise", "impulse_noise",
                                                            "speckle_noise", "gaussian")]
    assert got["noise"] == pytest.approx(sum(noise) / len(noise))
    suite = [v for k, v in sets.items() if not k.startswith("gaussian@")]
    assert got["suite"] == pytest.approx(sum(suite) / len(suite)) and len(suite) == 38
    del sets["fog@1"], sets["fog@5"]
    assert robust_accuracies(sets)["suite"] is None  # not the full suite


def test_pick_setting_is_the_closest_then_the_smaller_lr():
    s = [setting("vpt_deep", lr, 8, [c] * 2, [50.0] * 2) for lr, c in ((0.25, 96.6), (1.0, 95.15), (4.0, 94.9))]
    assert pick_setting(s, "vpt_deep", 8, 95.0)["lr"] == 1.0  # 0.15 from the target, 4.0 0.1: a tie
    s[1]["clean"] = [95.35] * 2  # now 4.0 (0.1) is closest and 1.0 (0.35) is out of the tie
    assert pick_setting(s, "vpt_deep", 8, 95.0)["lr"] == 4.0
    with pytest.raises(NVPTError, match="no sweep setting of spike_nvpt with 8"):
        pick_setting(s, "spike_nvpt", 8, 95.0)


def comparison(method: str, lr: float, length: int, clean: list[float], noise: list[float]) -> dict:
    runs = [{"seed": i, "clean": c, "sets": {"gaussian@0.1": {"accuracy": m}, "gaussian_noise@3": {"accuracy": m}},
             "mean_corrupted": m} for i, (c, m) in enumerate(zip(clean, noise))]
    comp = compare_runs({method: runs}, reference=method)
    comp["recipe"] = {method: {"prompt.method": method, "prompt.length": length, "train.base_lr": lr, "train.epochs": 2}}
    return comp


def test_points_table_and_tool(tmp_path, monkeypatch, capsys):
    files = []
    for method, lr, length, clean, shift in (("vpt_deep", 0.25, 8, [90.0, 91.0, 92.0], 0.0),
                                             ("vpt_deep", 1.0, 8, [93.0, 94.0, 95.0], 0.0),
                                             ("vpt_deep", 4.0, 32, [96.0, 96.5, 97.0], 0.0),
                                             ("spike_nvpt", 1.0, 32, [94.0, 95.0, 96.0], 5.0)):
        path = tmp_path / "fronts" / method / f"lr{lr}-p{length}" / "comparison.json"
        path.parent.mkdir(parents=True)
        # VPT-deep: every seed at the line's value at the seed-mean clean accuracy (the fit is then exact)
        robust = [on_line(c) + shift for c in clean] if shift else [on_line(sum(clean) / 3)] * 3
        path.write_text(json.dumps(comparison(method, lr, length, clean, robust)))
        files.append(path)
    comps = {f"{p.parent.parent.name}/{p.parent.name}": json.loads(p.read_text()) for p in files}
    rows = front_rows(sweep_settings(comps), fit_fronts(sweep_settings(comps)))
    table = fronts_markdown(rows, fit_fronts(sweep_settings(comps)))
    spike = next(line for line in table.splitlines() if line.startswith("| spike_nvpt |"))
    assert spike.startswith("| spike_nvpt | lr 1 | 32 | 0,1,2 | 95.00 ± 1.00") and spike.endswith("| best clean |")
    er = rows[-1]["er_noise"]
    assert er["mean"] == pytest.approx(5.0) and er["ci95_low"] > 0  # 5 points above the front
    assert spike.count("**") == 2  # an interval above 0
    rc, out, _ = run_tool(monkeypatch, capsys, "fronts", "table", *files, "--out", tmp_path / "docs" / "fronts")
    assert rc == 0 and "| vpt_deep | lr 0.25 | 8 |" in out
    assert (tmp_path / "docs" / "fronts.md").read_text() in out
    assert json.loads((tmp_path / "docs" / "fronts.json").read_text())["fronts"]["noise"]["n"] == 3
    assert (tmp_path / "docs" / "fronts.png").stat().st_size > 10_000 and (tmp_path / "docs" / "fronts.pdf").is_file()
    # an old comparison.json without the recipe, or the same setting twice: one line each
    old = json.loads(files[0].read_text())
    del old["recipe"]
    (tmp_path / "old.json").write_text(json.dumps(old))
    rc, _, err = run_tool(monkeypatch, capsys, "fronts", "table", tmp_path / "old.json", "--out", tmp_path / "x")
    assert rc == 2 and "records no recipe" in err
    twice = tmp_path / "again" / "p" / "comparison.json"
    twice.parent.mkdir(parents=True)
    twice.write_text(files[0].read_text())
    rc, _, err = run_tool(monkeypatch, capsys, "fronts", "table", files[0], twice, "--out", tmp_path / "x")
    assert rc == 2 and "pass each setting once" in err
    rc, _, err = run_tool(monkeypatch, capsys, "fronts", "table", files[3], "--out", tmp_path / "x")
    assert rc == 2 and "no settings of the reference method 'vpt_deep'" in err


# ----------------------------------------------------------------------------- tools/reproduce_study.sh plumbing

ROOT = Path(__file__).resolve().parent.parent
# the study's task shrunk to a few seconds a run: 20 training images, one step, two noisy sets
TINY_RUNS = ("train.epochs=1 train.warmup_epochs=0 train.max_steps_per_epoch=1 data.train_per_class=1 "
             "data.val_per_class=2 data.test_per_class=2 eval.corruptions=[gaussian_noise] eval.severities=[1] "
             "eval.gaussian_std=[0.1]")


def study(case: str, tmp_path: Path, **env) -> subprocess.CompletedProcess:
    full = {**os.environ, "PY": sys.executable, "OUT": str(tmp_path / "runs"), "DOCS": str(tmp_path / "docs"),
            "LRS": "1 2", "SEEDS": "1", "FINAL_SEEDS": "1", "ARGS": TINY_RUNS, **env}
    return subprocess.run(["bash", str(ROOT / "tools" / "reproduce_study.sh"), case], env=full, capture_output=True,
                          text=True, timeout=300)


def test_reproduce_study_fronts_and_the_final(tmp_path):
    # one method's points first (as on a second core): no table yet; the full call then trains only the other
    part = study("fronts", tmp_path, FRONTS_METHODS="vpt_deep")
    assert part.returncode == 0, part.stderr[-2000:]
    assert len(list((tmp_path / "runs" / "fronts").glob("*/*/comparison.json"))) == 4
    assert not (tmp_path / "runs" / "fronts" / "spike_nvpt").exists() and not (tmp_path / "docs" / "fronts.md").exists()
    done = study("fronts", tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count(": done") == 4  # vpt_deep's points are reused
    points = sorted(p.relative_to(tmp_path / "runs" / "fronts").parent.as_posix()
                    for p in (tmp_path / "runs" / "fronts").glob("*/*/comparison.json"))
    assert points == [f"{m}/lr{lr}-p{n}" for m in ("spike_nvpt", "vpt_deep") for lr in (1, 2) for n in (32, 8)]
    table = (tmp_path / "docs" / "fronts.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith(("| vpt_deep |", "| spike_nvpt |"))]
    assert len(rows) == 8 and "| spike_nvpt | " in rows[-1] and "| 32 | 0 |" in rows[-1]
    assert "vpt_deep's front, logit(robust)" in table and (tmp_path / "docs" / "fronts.png").is_file()
    # run again (in this process: no second start-up), every finished point is reused, nothing trains
    from nvpt.comparison import run_sweep

    said = []
    run_sweep(ROOT / "configs" / "experiments" / "textures_fronts.yaml",
              ["train.threads=1", "eval.split=val"] + TINY_RUNS.split(), ["vpt_deep", "spike_nvpt"], ["1", "2"],
              [8, 32], 1, tmp_path / "runs" / "fronts", log=said.append)
    assert len(said) == 8 and all(line.endswith(": done") for line in said)
    # the final in two parts too: one method's runs (no markdown), then the full call reuses them
    part = study("fronts-final", tmp_path, FRONTS_METHODS="spike_nvpt")
    assert part.returncode == 0, part.stderr[-2000:]
    assert len(list((tmp_path / "runs" / "fronts_final").glob("p*/runs/*spike_nvpt-s0/results.json"))) == 2
    assert not list((tmp_path / "runs" / "fronts_final").glob("p*/runs/*vpt_deep*"))
    assert not (tmp_path / "docs" / "fronts_final.md").exists()
    final = study("fronts-final", tmp_path)
    assert final.returncode == 0, final.stderr[-2000:]
    assert final.stdout.count("spike_nvpt seed 0 ... reused") == 2 and final.stdout.count("vpt_deep seed 0 ... training") == 2
    md = (tmp_path / "docs" / "fronts_final.md").read_text()
    assert "Target clean accuracy 95 %" in md and "## 8 prompt tokens" in md and "## 32 prompt tokens" in md
    assert "| spike_nvpt − vpt_deep |" in md
    picked = (tmp_path / "runs" / "fronts_final" / "p32" / "spike_nvpt.yaml").read_text()
    assert "length: 32" in picked and "method: spike_nvpt" in picked
    result = json.loads(next((tmp_path / "runs" / "fronts_final" / "p8" / "runs").glob("*spike_nvpt-s0/results.json")).read_text())
    assert result["split"] == "test" and result["images"]["test"] == 40


def test_reproduce_study_probe64(tmp_path):
    # the 64-px task's plumbing on the 32-px demo backbone (the 64-px file is made by a pretraining of hours)
    cfg = tmp_path / "task64.yaml"
    cfg.write_text(f"_base_: {ROOT / 'configs' / 'experiments' / 'textures64.yaml'}\nmodel:\n  img_size: 32\n"
                   f"  pretrained_file: {ROOT / 'nvpt' / 'assets' / 'demo_backbone.safetensors'}\ndata:\n  crop_size: 32\n")
    done = study("probe64", tmp_path, FRONTS64_CFG=str(cfg), SEEDS="2")
    assert done.returncode == 0, done.stderr[-2000:]
    md = (tmp_path / "docs" / "probe64.md").read_text()
    assert "| pretrained |" in md and "clean − random" in md and "| random |" in md
    runs = json.loads((tmp_path / "runs" / "probe64" / "comparison.json").read_text())["runs"]
    configs = [yaml.safe_load((Path(r) / "config.yaml").read_text())["model"]["pretrained_file"]
               for r in runs["pretrained"] + runs["random"]]
    assert configs[:2] == [str(ROOT / "nvpt" / "assets" / "demo_backbone.safetensors")] * 2 and configs[2:] == [None, None]
    # without the weights file: one line that says how to make it, before any run folder exists
    cfg.write_text(cfg.read_text().replace(str(ROOT / "nvpt" / "assets" / "demo_backbone.safetensors"),
                                           str(tmp_path / "absent.safetensors")))
    missing = study("probe64", tmp_path / "again", FRONTS64_CFG=str(cfg))
    assert missing.returncode != 0 and not (tmp_path / "again" / "docs" / "probe64.md").exists()
    assert "error: weights file not found:" in missing.stderr and "tools/pretrain.py configs/demo/backbone64.yaml" in missing.stderr
    assert not (tmp_path / "again" / "runs" / "probe64" / "runs").exists()


def test_the_final_refuses_a_partial_sweep(tmp_path):
    from nvpt.comparison import run_final

    settings = [setting(m, 1.0, 8, [95.0], [50.0]) for m in ("vpt_deep", "spike_nvpt")]
    with pytest.raises(NVPTError, match="the sweep lacks vpt_deep at 8 tokens with lr 2: finish the sweep"):
        run_final(ROOT / "configs" / "experiments" / "textures_fronts.yaml", [], settings, 95.0, [8], ["1", "2"], 1,
                  tmp_path / "final")
    with pytest.raises(NVPTError, match="override 'train.base_lr=1' is not allowed"):
        run_final(ROOT / "configs" / "experiments" / "textures_fronts.yaml", ["train.base_lr=1"], settings, 95.0, [8],
                  ["1"], 1, tmp_path / "final")
    assert not (tmp_path / "final").exists()
