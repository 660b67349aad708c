"""tools/eval_robustness.py on real tiny runs: same numbers as training, outputs, reference, bad input.

Every call of the tool is a real subprocess; they are all started together once the runs
exist (most of their time is importing torch), and each test waits for its own.
"""
import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import tiny_cfg
from nvpt.pipeline import run_training

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parent.parent
TOOL = ROOT / "tools" / "eval_robustness.py"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg"}
RUN_OPTS = ("data.name=textures", "data.train_per_class=4", "data.test_per_class=4", "data.val_fraction=0.25",
            "data.crop_size=32", "data.num_workers=0", "train.epochs=1", "train.warmup_epochs=0",
            "eval.gaussian_std=[0.1]", "eval.corruptions=[gaussian_noise]", "eval.severities=[1]",
            "model.num_classes=null")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two finished runs on the same test crops: spike_nvpt (evaluated) and vpt_deep (reference)."""
    out = tmp_path_factory.mktemp("runs")
    made = {}
    for method in ("spike_nvpt", "vpt_deep"):
        cfg = tiny_cfg(*RUN_OPTS, f"prompt.method={method}", f"output_dir={out}", f"run_name={method}")
        made[method] = run_training(cfg, log=lambda m: None, show_progress=False).run_dir
    return made


def results(run_dir):
    return json.loads((run_dir / "results.json").read_text())


def _no_checkpoint(runs, tmp):
    shutil.copy(runs["spike_nvpt"] / "config.yaml", tmp / "config.yaml")
    return [tmp]


def _other_model(runs, tmp):
    # a spike_nvpt checkpoint next to a vpt_deep config
    shutil.copy(runs["vpt_deep"] / "config.yaml", tmp / "config.yaml")
    shutil.copy(runs["spike_nvpt"] / "checkpoint-best.safetensors", tmp / "checkpoint-best.safetensors")
    return [tmp]


def _other_test_data(runs, tmp):
    # the vpt_deep run with another test set (data.test_per_class) next to the spike_nvpt run
    shutil.copytree(runs["vpt_deep"], tmp / "vpt_deep")
    config = tmp / "vpt_deep" / "config.yaml"
    config.write_text(config.read_text().replace("test_per_class: 4", "test_per_class: 3"))
    return [runs["spike_nvpt"], tmp / "vpt_deep"]


# case -> tool arguments (given the runs and a fresh folder)
CALLS = {
    "two runs": lambda r, tmp: [r["spike_nvpt"], r["vpt_deep"], "--out", tmp],
    "other test data": lambda r, tmp: _other_test_data(r, tmp) + ["--out", tmp / "out"],
    "same options": lambda r, tmp: [r["spike_nvpt"], "--reference", r["vpt_deep"], "--device", "cpu"],
    "other sets": lambda r, tmp: [r["spike_nvpt"], "--gaussian-std", "0.2", "--noise-seed", "0",
                                  "--reference", r["vpt_deep"], "--out", tmp],
    "json reference": lambda r, tmp: [r["spike_nvpt"], "--corruptions", "--reference", r["vpt_deep"] / "results.json",
                                      "--out", tmp],
    "no checkpoint": lambda r, tmp: _no_checkpoint(r, tmp) + ["--out", tmp / "out"],
    "other model": lambda r, tmp: _other_model(r, tmp) + ["--out", tmp / "out"],
    "families": lambda r, tmp: [r["spike_nvpt"], "--corruptions", "weather", "saturate", "--severities", "2",
                                "--gaussian-std", "--out", tmp],
    "unknown corruption": lambda r, tmp: [r["spike_nvpt"], "--corruptions", "fogg", "--out", tmp / "out"],
    "severity 6": lambda r, tmp: [r["spike_nvpt"], "--severities", "1", "6", "--out", tmp / "out"],
    "missing path": lambda r, tmp: [tmp / "nowhere", "--out", tmp / "out"],
}


@pytest.fixture(scope="module")
def calls(runs, tmp_path_factory):
    started = {}
    for name, make_args in CALLS.items():
        tmp = tmp_path_factory.mktemp(name.replace(" ", "_"))
        cmd = [sys.executable, str(TOOL), *map(str, make_args(runs, tmp))]
        started[name] = (tmp, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                               env=ENV, cwd=ROOT))
    yield started
    for _, proc in started.values():
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def finished(calls, name):
    """(the call's folder, CompletedProcess) once that call has exited."""
    tmp, proc = calls[name]
    stdout, stderr = proc.communicate(timeout=300)
    return tmp, subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def test_same_numbers_as_training_and_reference_results(runs, calls):
    run, ref = runs["spike_nvpt"], runs["vpt_deep"]
    _, proc = finished(calls, "same options")
    assert proc.returncode == 0, proc.stderr
    out = run / "robustness"  # the default output folder
    got = json.loads((out / "robustness.json").read_text())
    trained, ref_trained = results(run), results(ref)

    # identical evaluation code, options and checkpoint: identical accuracies
    assert got["clean"] == trained["clean"]
    assert set(got["sets"]) == {"gaussian_noise@1", "gaussian@0.1"}
    for key, row in got["sets"].items():
        assert row["accuracy"] == trained["sets"][key]["accuracy"], key
        assert row["relative"] == pytest.approx(row["accuracy"] / got["clean"])
    assert got["mean_corrupted"] == trained["mean_corrupted"]
    assert got["relative_robustness"] == pytest.approx(got["mean_corrupted"] / got["clean"])
    assert got["test_images"] == 80 and got["method"] == "spike_nvpt"

    # same sets, data and seed: the reference's results.json is used, not re-evaluated
    assert got["reference"]["source"] == "results.json"
    assert got["diff_to_reference"]["clean"] == pytest.approx(trained["clean"] - ref_trained["clean"])
    assert got["diff_to_reference"]["mean_corrupted"] == pytest.approx(
        trained["mean_corrupted"] - ref_trained["mean_corrupted"])
    for key, row in got["sets"].items():
        assert row["diff_to_reference"] == pytest.approx(row["accuracy"] - ref_trained["sets"][key]["accuracy"])

    rows = list(csv.DictReader((out / "robustness.csv").open()))
    assert [r["set"] for r in rows] == ["clean", "gaussian_noise@1", "mean:gaussian_noise", "gaussian@0.1",
                                        "mean:gaussian", "family:noise", "mean_corrupted"]
    assert float(rows[1]["accuracy"]) == trained["sets"]["gaussian_noise@1"]["accuracy"]
    assert float(rows[1]["relative"]) == pytest.approx(float(rows[1]["accuracy"]) / got["clean"])
    md = (out / "robustness.md").read_text()
    assert "| set | accuracy | relative | Δ ref |" in md
    assert f"| clean | {trained['clean']:.2f} |" in md
    assert "| gaussian_noise@1 |" in proc.stdout and "| mean_corrupted |" in proc.stdout


def test_reference_evaluated_on_other_sets(runs, calls):
    run, ref = runs["spike_nvpt"], runs["vpt_deep"]
    tmp, proc = finished(calls, "other sets")
    assert proc.returncode == 0, proc.stderr
    got = json.loads((tmp / "robustness.json").read_text())
    assert set(got["sets"]) == {"gaussian_noise@1", "gaussian@0.2"}
    assert got["clean"] == results(run)["clean"]
    # results.json lacks gaussian@0.2, so the reference was evaluated here on the same images
    reference = got["reference"]
    assert reference["source"] == "evaluated"
    ref_trained = results(ref)
    assert reference["summary"]["clean"] == ref_trained["clean"]
    assert reference["summary"]["sets"]["gaussian_noise@1"]["accuracy"] == ref_trained["sets"]["gaussian_noise@1"]["accuracy"]
    for key, row in got["sets"].items():
        assert row["diff_to_reference"] == pytest.approx(row["accuracy"] - reference["summary"]["sets"][key]["accuracy"])
    assert got["diff_to_reference"]["mean_corrupted"] == pytest.approx(
        got["mean_corrupted"] - reference["summary"]["mean_corrupted"])


def test_corruption_groups(runs, calls):
    tmp, proc = finished(calls, "families")
    assert proc.returncode == 0, proc.stderr
    got = json.loads((tmp / "robustness.json").read_text())
    assert list(got["sets"]) == ["snow@2", "frost@2", "fog@2", "brightness@2", "spatter@2", "saturate@2"]
    assert got["families"]["weather"]["n_sets"] == 5 and got["families"]["digital"]["corruptions"] == ["saturate"]
    assert got["families"]["weather"]["accuracy"] == pytest.approx(
        sum(got["sets"][k]["accuracy"] for k in list(got["sets"])[:5]) / 5)
    assert "| family:weather |" in (tmp / "robustness.md").read_text()


def test_reference_results_json_file(runs, calls):
    tmp, proc = finished(calls, "json reference")
    assert proc.returncode == 0, proc.stderr
    got = json.loads((tmp / "robustness.json").read_text())
    assert list(got["sets"]) == ["gaussian@0.1"] and got["reference"]["source"] == "json"
    assert got["sets"]["gaussian@0.1"]["diff_to_reference"] == pytest.approx(
        got["sets"]["gaussian@0.1"]["accuracy"] - results(runs["vpt_deep"])["sets"]["gaussian@0.1"]["accuracy"])
    assert got["diff_to_reference"]["mean_corrupted"] is None  # the reference has another set list
    assert "note:" in proc.stdout


def test_several_runs_in_one_pass_equal_their_own_evaluations(runs, calls):
    """Corrupt once, score many: each run's numbers are bit-identical to its own final evaluation (one by one)."""
    tmp, proc = finished(calls, "two runs")
    assert proc.returncode == 0, proc.stderr
    for method, run in runs.items():
        got, trained = json.loads((tmp / run.name / "robustness.json").read_text()), results(run)
        assert got["method"] == method and got["test_images"] == 80
        assert got["clean"] == trained["clean"] and got["mean_corrupted"] == trained["mean_corrupted"]
        assert {k: v["accuracy"] for k, v in got["sets"].items()} == {k: v["accuracy"] for k, v in trained["sets"].items()}
    assert proc.stdout.count("wrote ") == 2


@pytest.mark.parametrize("case, needle", [
    ("other test data", "different test data"),
    ("no checkpoint", "no checkpoint-best"),
    ("other model", "another model"),
    ("unknown corruption", "unknown corruption 'fogg'"),
    ("severity 6", "severity"),
    ("missing path", "no run folder or checkpoint"),
])
def test_bad_input_one_line_error(calls, case, needle):
    tmp, proc = finished(calls, case)
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and needle in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp / "out").exists()
