"""Method comparison: nvpt.robustness.compare on hand-made results, tools/compare.py end to end."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import load_tool

from nvpt.errors import NVPTError
from nvpt.robustness.corruptions import CORRUPTION_VERSION
from nvpt.robustness.compare import (compare_runs, comparison_markdown, family_curves, family_markdown, noise_curves,
                                     plot_comparison, set_accuracies, summary_markdown)
from nvpt.robustness.report import summarize, t_critical_95

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parent.parent
TOOL = ROOT / "tools" / "compare.py"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg"}


def result(seed, clean, noise1, sigma01):
    return {**summarize(clean, {"gaussian_noise@1": noise1, "gaussian@0.1": sigma01}), "seed": seed}


SPIKE = [result(0, 80.0, 75.0, 70.0), result(1, 82.0, 77.0, 74.0), result(2, 84.0, 79.0, 72.0)]
VPT = [result(0, 79.0, 70.0, 60.0), result(1, 81.0, 71.0, 62.0), result(2, 80.0, 72.0, 64.0)]


def ci_half(std, n):
    return t_critical_95(n - 1) * std / math.sqrt(n)


def test_compare_runs_statistics_paired_by_seed():
    # the spike results come in another order: pairing must follow the seed field
    comp = compare_runs({"spike_nvpt": SPIKE[::-1], "vpt_deep": VPT}, reference="vpt_deep")
    assert comp["seeds"] == [0, 1, 2] and comp["methods"] == ["spike_nvpt", "vpt_deep"]
    assert comp["sets"] == ["clean", "gaussian_noise@1", "gaussian@0.1", "family:noise", "mean_corrupted"]
    assert comp["accuracy"]["spike_nvpt"]["family:noise"]["values"] == [75.0, 77.0, 79.0]  # gaussian@sigma: no family

    clean = comp["accuracy"]["spike_nvpt"]["clean"]
    assert clean["values"] == [80.0, 82.0, 84.0]
    assert clean["mean"] == 82.0 and clean["std"] == pytest.approx(2.0) and clean["n"] == 3
    assert clean["ci95_low"] == pytest.approx(82.0 - ci_half(2.0, 3))
    assert clean["ci95_high"] == pytest.approx(82.0 + ci_half(2.0, 3))
    assert comp["accuracy"]["spike_nvpt"]["mean_corrupted"]["values"] == [72.5, 75.5, 75.5]
    assert comp["accuracy"]["vpt_deep"]["gaussian@0.1"]["mean"] == 62.0

    assert set(comp["gain"]) == {"spike_nvpt"}  # no gain of the reference over itself
    gain = comp["gain"]["spike_nvpt"]
    assert gain["clean"]["values"] == [1.0, 1.0, 4.0]
    assert gain["clean"]["mean"] == 2.0 and gain["clean"]["std"] == pytest.approx(math.sqrt(3.0))
    assert gain["gaussian@0.1"]["values"] == [10.0, 12.0, 8.0]
    assert gain["gaussian@0.1"]["ci95_low"] == pytest.approx(10.0 - ci_half(2.0, 3))
    assert gain["mean_corrupted"]["values"] == [7.5, 9.0, 7.5]
    json.dumps(comp, allow_nan=False)  # JSON-ready as written to comparison.json


def test_set_accuracies_order():
    assert list(set_accuracies(SPIKE[0])) == ["clean", "gaussian_noise@1", "gaussian@0.1", "family:noise",
                                              "mean_corrupted"]
    assert set_accuracies({**summarize(70.0, {}), "seed": 0}) == {"clean": 70.0}


@pytest.mark.parametrize("results, reference, needle", [
    ({"spike_nvpt": SPIKE[:2], "vpt_deep": VPT}, "vpt_deep", "same seeds"),
    ({"spike_nvpt": [SPIKE[0], SPIKE[0]], "vpt_deep": VPT[:1]}, "vpt_deep", "two results for seed 0"),
    ({"spike_nvpt": [{**summarize(80.0, {"gaussian@0.2": 50.0}), "seed": 0}], "vpt_deep": VPT[:1]}, "vpt_deep",
     "other sets"),
    ({"spike_nvpt": SPIKE}, "vpt_deep", "reference method 'vpt_deep' has no results"),
    ({"spike_nvpt": [{"clean": 80.0}], "vpt_deep": VPT[:1]}, "vpt_deep", "not a results.json summary"),
])
def test_compare_runs_rejects_unpairable_results(results, reference, needle):
    with pytest.raises(NVPTError, match=needle):
        compare_runs(results, reference=reference)


def test_markdown_table():
    md = comparison_markdown(compare_runs({"spike_nvpt": SPIKE, "vpt_deep": VPT}))
    assert "over 3 seeds (0, 1, 2)" in md
    assert "| set | spike_nvpt | vpt_deep |" in md
    half = ci_half(2.0, 3)
    assert f"| clean | 82.00 ± 2.00 [{82 - half:.2f}, {82 + half:.2f}] | 80.00 ± 1.00 [" in md
    assert "| mean corrupted (mCA) |" in md
    assert "| set | spike_nvpt − vpt_deep |" in md
    # gain on gaussian@0.1: 10 ± 4.97, the interval excludes 0 -> bold; clean: 2 ± 4.3, it does not
    assert f"| gaussian@0.1 | **+10.00 ± 2.00 [+{10 - half:.2f}, +{10 + half:.2f}]** |" in md
    assert "| clean | +2.00 ± 1.73 [" in md and "| clean | **" not in md


def test_summary_table_one_row_per_method():
    md = summary_markdown(compare_runs({"spike_nvpt": SPIKE, "vpt_deep": VPT}))
    lines = [line for line in md.splitlines() if line.startswith("| ")]
    assert lines[0].startswith("| method | clean | mCA | clean − vpt_deep | mCA − vpt_deep |")
    spike = next(line for line in lines if line.startswith("| spike_nvpt |"))
    # mCA gain: mean over seeds of (72.5 - 65, 75.5 - 66.5, 75.5 - 68) = (7.5 + 9 + 7.5) / 3 = 8
    assert "**+8.00 ± 0.87 [" in spike
    assert spike.endswith("| +10.00 (gaussian@0.1) |")  # the set with the largest mean gain
    assert next(line for line in lines if line.startswith("| vpt_deep |")).endswith("| — | — | — |")


def test_markdown_single_seed_and_single_method():
    md = comparison_markdown(compare_runs({"vpt_deep": VPT[:1]}))
    assert "| clean | 79.00 |" in md and "±" not in md
    assert "Gain over" not in md


def test_noise_curves_and_plot(tmp_path):
    extra = {"shot_noise@2": 50.0, "shot_noise@1": 60.0, "gaussian@0.2": 40.0, "gaussian@0.1": 55.0}
    runs = {m: [{**summarize(70.0 + s, {k: v - 5 * (m == "vpt_deep") for k, v in extra.items()}), "seed": s}
                for s in range(2)] for m in ("spike_nvpt", "vpt_deep")}
    comp = compare_runs(runs)
    curves = noise_curves(comp)
    assert list(curves) == ["shot_noise", "gaussian"]
    assert curves["shot_noise"]["x"] == [0.0, 1.0, 2.0] and curves["gaussian"]["x"] == [0.0, 0.1, 0.2]
    assert curves["gaussian"]["methods"]["vpt_deep"]["mean"] == [70.5, 50.0, 35.0]
    assert curves["gaussian"]["methods"]["spike_nvpt"]["low"][0] == pytest.approx(70.5 - ci_half(math.sqrt(0.5), 2))

    written = plot_comparison(comp, tmp_path / "plots" / "comparison")
    assert [p.name for p in written] == ["comparison.png", "comparison.pdf", "comparison_corruptions.png",
                                         "comparison_corruptions.pdf"]
    assert written[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and written[0].stat().st_size > 5000
    assert written[1].read_bytes()[:5] == b"%PDF-"
    assert not [p for p in (tmp_path / "plots").iterdir() if p.name.startswith(".")]  # no temp files left


def _family_runs():
    """Two methods, two seeds, two severities of one corruption in each of noise and weather."""
    def res(seed, clean, shift):
        sets = {"shot_noise@1": 60.0, "shot_noise@3": 40.0, "speckle_noise@1": 70.0, "speckle_noise@3": 50.0,
                "fog@1": 66.0, "fog@3": 30.0}
        return {**summarize(clean, {k: v + shift + seed for k, v in sets.items()}), "seed": seed}
    return {"spike_nvpt": [res(s, 80.0, 4.0) for s in (0, 1)], "vpt_deep": [res(s, 82.0, 0.0) for s in (0, 1)]}


def test_family_means_tables_and_curves(tmp_path):
    comp = compare_runs(_family_runs())
    assert [k for k in comp["sets"] if k.startswith("family:")] == ["family:noise", "family:weather"]
    # noise per seed: mean of the 4 noise sets = 55 + shift + seed
    assert comp["accuracy"]["vpt_deep"]["family:noise"]["values"] == [55.0, 56.0]
    assert comp["gain"]["spike_nvpt"]["family:weather"]["values"] == [4.0, 4.0]
    md = family_markdown(comp)
    assert "| method | clean | noise | weather | mCA |" in md
    assert "| vpt_deep | 82.00 ± 0.00 [82.00, 82.00] | 55.50 ± 0.71 [" in md
    assert "| spike_nvpt − vpt_deep | **-2.00 ± 0.00 [-2.00, -2.00]** | **+4.00 ± 0.00 [+4.00, +4.00]** |" in md
    assert "| noise (family mean) |" in comparison_markdown(comp)

    curves = family_curves(comp)
    assert list(curves) == ["noise", "weather"]
    assert curves["noise"]["x"] == [0.0, 1.0, 3.0]
    # severity 1 of noise for vpt_deep: mean of shot@1 and speckle@1 = 65 (+ seed), over seeds 65.5
    assert curves["noise"]["methods"]["vpt_deep"]["mean"] == [82.0, 65.5, 45.5]
    assert curves["weather"]["methods"]["spike_nvpt"]["mean"] == [80.0, 70.5, 34.5]
    written = plot_comparison(comp, tmp_path / "c")
    assert [p.name for p in written] == ["c.png", "c.pdf", "c_corruptions.png", "c_corruptions.pdf"]


# ----------------------------------------------------------------------------- the tool



def tiny_config(tmp_path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(f"""_base_: {ROOT / 'configs' / 'demo' / 'base.yaml'}
model:
  pretrained_file: null
  kwargs: "{{patch_size: 8, depth: 2, embed_dim: 32, num_heads: 2}}"
data:
  train_per_class: 4
  test_per_class: 4
  crop_size: 32
train:
  epochs: 1
  warmup_epochs: 0
  threads: 1
eval:
  gaussian_std: [0.1, 0.2]
  corruptions: []
output_dir: {tmp_path / 'runs'}
""")
    return path


def compare(*args):
    return subprocess.run([sys.executable, str(TOOL), *map(str, args)], capture_output=True, text=True, env=ENV,
                          cwd=ROOT, timeout=600)


def snapshot(runs_dir):
    return {str(p.relative_to(runs_dir)): p.stat().st_mtime_ns for p in runs_dir.glob("tiny-*/*")}


def test_compare_tool_end_to_end(tmp_path, capsys):
    config = tiny_config(tmp_path)
    runs_dir, out = tmp_path / "runs", tmp_path / "runs" / "compare-tiny"
    args = [config, "--methods", "spike_nvpt", "vpt_deep", "--seeds", "2"]

    first = compare(*args)
    assert first.returncode == 0, first.stderr
    for i, (m, s) in enumerate([("spike_nvpt", 0), ("spike_nvpt", 1), ("vpt_deep", 0), ("vpt_deep", 1)], 1):
        assert f"[{i}/4] {m} seed {s} ... training" in first.stdout
    comp = json.loads((out / "comparison.json").read_text())
    stored = {(m, s): json.loads((runs_dir / f"tiny-{m}-s{s}" / "results.json").read_text())
              for m in ("spike_nvpt", "vpt_deep") for s in (0, 1)}
    assert {(m, r["seed"]) for (m, _), r in stored.items()} == set(stored)  # prompt.method and seed were set
    assert all(r["method"] == m for (m, _), r in stored.items())
    assert comp["sets"] == ["clean", "gaussian@0.1", "gaussian@0.2", "mean_corrupted"]
    assert comp["accuracy"]["spike_nvpt"]["clean"]["values"] == [stored["spike_nvpt", s]["clean"] for s in (0, 1)]
    assert comp["gain"]["spike_nvpt"]["gaussian@0.2"]["values"] == pytest.approx(
        [stored["spike_nvpt", s]["sets"]["gaussian@0.2"]["accuracy"]
         - stored["vpt_deep", s]["sets"]["gaussian@0.2"]["accuracy"] for s in (0, 1)])
    md = (out / "comparison.md").read_text()
    assert "| set | spike_nvpt | vpt_deep |" in md and "spike_nvpt − vpt_deep" in md and md.split("\n", 2)[2] in first.stdout
    assert (out / "comparison.png").stat().st_size > 0 and (out / "comparison.pdf").stat().st_size > 0

    # rerun: every run is collected, nothing is retrained or rewritten
    before = snapshot(runs_dir)
    second = compare(*args)
    assert second.returncode == 0, second.stderr
    assert second.stdout.count(" reused ") == 4 and "training" not in second.stdout
    assert snapshot(runs_dir) == before
    assert json.loads((out / "comparison.json").read_text())["accuracy"] == comp["accuracy"]

    # an unfinished run (no results.json) is resumed, and evaluates to the same numbers
    unfinished = runs_dir / "tiny-vpt_deep-s1"
    (unfinished / "results.json").unlink()
    third = compare(*args)
    assert third.returncode == 0, third.stderr
    assert "[4/4] vpt_deep seed 1 ... resuming" in third.stdout and third.stdout.count(" reused ") == 3
    again = json.loads((unfinished / "results.json").read_text())
    assert again["clean"] == stored["vpt_deep", 1]["clean"] and again["sets"] == stored["vpt_deep", 1]["sets"]

    # bad input fails before any training, with one line (in-process: no torch import to wait for)
    tool = load_tool("compare")
    before = snapshot(runs_dir)
    for bad, needle in [
        (["--methods", "spike_nvpt", "vpt_deeep"], "unknown method 'vpt_deeep' in --methods; valid: linear, "),
        (["--methods", "spike_nvpt", "linear"], "--reference vpt_deep must be one of --methods"),
        (["seed=3", "--methods", "spike_nvpt", "vpt_deep"], "override 'seed=3' is not allowed"),
        (["train.base_lr=0.123", "--methods", "spike_nvpt", "vpt_deep", "--seeds", "2"], "differs in train.base_lr"),
        (["--methods", "spike_nvpt", "vpt_deep", "--seeds", "2", "--no-reuse"], "already exists"),
    ]:
        assert tool.run_main(tool.main, [str(config), *bad]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error:") and err.count("\n") == 1 and needle in err, err
    assert snapshot(runs_dir) == before
    assert sorted(p.name for p in runs_dir.iterdir()) == ["compare-tiny", "tiny-spike_nvpt-s0", "tiny-spike_nvpt-s1",
                                                          "tiny-vpt_deep-s0", "tiny-vpt_deep-s1"]

    # a finished run evaluated with an older corruption code version (no "corruption_version": 1) is
    # refused before any work, naming it and the fix; its re-evaluation by tools/eval_robustness.py is used
    assert comp["corruption_version"] == CORRUPTION_VERSION and all(
        r["corruption_version"] == CORRUPTION_VERSION for r in stored.values())
    old_run = runs_dir / "tiny-vpt_deep-s0"
    current = json.loads((old_run / "results.json").read_text())
    (old_run / "results.json").write_text(json.dumps({k: v for k, v in current.items() if k != "corruption_version"}))
    assert tool.run_main(tool.main, [str(config), *args[1:]]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(old_run) in err and "version 1" in err and "tools/eval_robustness.py" in err, err
    redo = {**current, "checkpoint": str(old_run / "checkpoint-best.safetensors"), "run": str(old_run)}
    (old_run / "robustness").mkdir()
    (old_run / "robustness" / "robustness.json").write_text(json.dumps(redo))
    assert tool.run_main(tool.main, [str(config), *args[1:]]) == 0
    assert json.loads((out / "comparison.json").read_text())["accuracy"] == comp["accuracy"]
