"""The corruption code version: recorded with every evaluation, never mixed in a comparison."""
import json

import pytest
import torch

from conftest import run_tool
from nvpt.errors import NVPTError
from nvpt.robustness.compare import compare_runs
from nvpt.robustness.corruptions import CORRUPTION_VERSION, check_versions, corruption_version
from nvpt.robustness.report import summarize

torch.set_num_threads(1)


def result(seed, version=None):
    out = {**summarize(80.0 + seed, {"gaussian@0.1": 70.0 + seed}), "seed": seed}
    if version is not None:
        out["corruption_version"] = version
    return out


def test_version_is_2_and_missing_means_1():
    assert CORRUPTION_VERSION == 2
    assert corruption_version({"clean": 1.0}) == 1 and corruption_version({"corruption_version": 2}) == 2
    assert check_versions({"a": result(0, 2), "b": result(1, 2)}) == 2
    # a clean-only result has no noisy images: it does not count
    assert check_versions({"a": {**summarize(80.0, {}), "seed": 0}, "b": result(1, 2)}) == 2


def test_evaluation_records_the_version(make_cfg):
    from nvpt.engine.loop import Normalize
    from nvpt.models import build_model
    from nvpt.robustness.evaluate import evaluate_robustness

    cfg = make_cfg("eval.gaussian_std=[0.1]", "eval.corruptions=[]")
    gen = torch.Generator().manual_seed(0)
    loader = [(torch.rand(4, 3, 32, 32, generator=gen), torch.tensor([0, 1, 2, 3]), torch.arange(4))]
    summary = evaluate_robustness(build_model(cfg).eval(), loader, Normalize((0.5,) * 3, (0.25,) * 3),
                                  torch.device("cpu"), cfg.eval, 32)
    assert summary["corruption_version"] == CORRUPTION_VERSION and set(summary["sets"]) == {"gaussian@0.1"}


def test_compare_runs_refuses_to_mix_versions():
    ok = compare_runs({"spike_nvpt": [result(0, 2), result(1, 2)], "vpt_deep": [result(0, 2), result(1, 2)]})
    assert ok["corruption_version"] == 2
    with pytest.raises(NVPTError) as err:
        compare_runs({"spike_nvpt": [result(0, 2), result(1, 2)], "vpt_deep": [result(0), result(1, 2)]})
    msg = str(err.value)
    assert "\n" not in msg and "version 1: vpt_deep seed 0" in msg and "version 2: " in msg
    assert "tools/eval_robustness.py" in msg
    # all of version 1 (made before the field): compared among themselves, labelled so
    assert compare_runs({"vpt_deep": [result(0), result(1)]})["corruption_version"] == 1


def test_sweep_table_refuses_to_mix_versions(tmp_path, monkeypatch, capsys):
    comp = compare_runs({"vpt_deep": [result(0, 2), result(1, 2)]})
    old = {k: v for k, v in comp.items() if k != "corruption_version"}
    for name, body in (("a", comp), ("b", old)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "comparison.json").write_text(json.dumps(body))
    rc, out, err = run_tool(monkeypatch, capsys, "sweep_table", tmp_path / "a" / "comparison.json",
                            tmp_path / "b" / "comparison.json")
    assert rc == 2 and err.count("\n") == 1 and "version 1: b" in err and "version 2: a" in err, err
    rc, out, err = run_tool(monkeypatch, capsys, "sweep_table", tmp_path / "a" / "comparison.json")
    assert rc == 0, err


def test_demo_refuses_an_outdated_run(tmp_path, monkeypatch, capsys):
    run = tmp_path / "vpt_deep-s0"
    run.mkdir()
    (run / "results.json").write_text(json.dumps(result(0)))
    rc, out, err = run_tool(monkeypatch, capsys, "demo", f"output_dir={tmp_path}", "--methods", "vpt_deep")
    assert rc == 2 and "version 1" in err and "--fresh" in err and err.count("\n") == 1, err
    assert (run / "results.json").is_file()
