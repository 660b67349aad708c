"""tools/benchmark.py end to end on the tiny ViT: every field of the JSON, no timing assertions."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import tiny_cfg
from nvpt.config import SCHEMA, dump_config

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
TIMES = {"median", "min", "max", "q1", "q3"}


def bench(tmp_path, *args):
    return subprocess.run([sys.executable, str(ROOT / "tools/benchmark.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=300, env=ENV, cwd=tmp_path)


def positive(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench")
    dump_config(tiny_cfg("prompt.method=vpt_deep", "data.batch_size=3"), tmp / "tiny.yaml")  # the tool sets the methods
    proc = bench(tmp, tmp / "tiny.yaml", "spike.noise_std=0.2", "--warmup", 1, "--repeats", 2, "--sfl-batches", 4, 1, 2,
                 "--time-steps", 2, 4, "--min-repeat-s", 0, "--device", "cpu", "--threads", 1, "--out", tmp / "b.json")
    assert proc.returncode == 0, proc.stderr
    return json.loads((tmp / "b.json").read_text()), proc.stdout


def test_json_has_every_measurement(result):
    data, _ = result
    assert data["batch_size"] == 3 and data["repeats"] == 2 and data["device"] == "cpu" and data["threads"] == 1
    assert data["overrides"] == ["spike.noise_std=0.2"] and data["weights"] == "random"
    m = data["model"]
    assert (m["prompt_layers"], m["prompt_length"], m["embed_dim"], m["depth"]) == (3, 4, 48, 3)
    assert (m["tokens_without_prompts"], m["tokens_with_prompts"]) == (1 + 16, 1 + 16 + 4)
    assert set(data["inference"]) == {"backbone", "vpt_deep", "spike_nvpt_eval", "spike_nvpt_deployed",
                                      "blocks_tokens_plain", "blocks_tokens_prompted"}
    assert set(data["training"]) == {"vpt_deep", "spike_nvpt_T2", "spike_nvpt_T4"}
    for row in list(data["inference"].values()) + list(data["training"].values()):
        assert positive(row["images_per_s"]) and set(row["time_ms"]) == TIMES
        assert all(positive(v) for v in row["time_ms"].values()) and positive(row["cpu_time_ms"])
        assert row["time_ms"]["min"] <= row["time_ms"]["median"] <= row["time_ms"]["max"]
        assert math.isfinite(row["memory"]["delta_mb"]) and row["memory"]["delta_mb"] >= 0 and row["memory"]["how"]


def test_ratios_and_targets(result):
    data, stdout = result
    checks = {c["name"]: c for c in data["checks"]}
    assert set(checks) == {"deployed_vs_vpt_inference", "deployed_vs_backbone_inference", "train_step_T2",
                           "train_step_T4", "sfl_batch_growth"}
    assert checks["deployed_vs_vpt_inference"]["target"] == 1.01
    assert checks["deployed_vs_backbone_inference"]["target"] == pytest.approx(21 / 17 * 1.03)
    assert checks["train_step_T4"]["target"] == 1.05 and checks["sfl_batch_growth"]["target"] == 1.1
    for c in checks.values():
        assert positive(c["ratio"]) and c["ratio"] == c["spread"]["median"]
        assert all(positive(c["spread"][k]) for k in TIMES | {"cpu_time_median"})
        assert c["pass"] == (c["ratio"] <= c["target"])
        assert f"{'PASS' if c['pass'] else 'FAIL'} {c['what']}: {c['ratio']:.3f}" in stdout
    assert data["all_pass"] == all(c["pass"] for c in checks.values())
    assert all(positive(r["median"]) for k, r in data["inference_ratios"].items() if isinstance(r, dict))


def test_sfl_table_covers_the_requested_batches(result):
    data, stdout = result
    sfl = data["sfl"]
    assert sfl["batches"] == [1, 2, 4] and sfl["time_steps"] == SCHEMA["spike.time_steps"].default
    for b in ("1", "2", "4"):
        assert set(sfl["sfl"][b]["time_ms"]) == TIMES and all(positive(v) for v in sfl["sfl"][b]["time_ms"].values())
        assert positive(sfl["train_step"][b]["images_per_s"]) and positive(sfl["share_of_step"][b])
    assert "SFL time per step at batch 4 / at batch 1" in stdout


def test_bad_arguments_are_one_line_errors(tmp_path, capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "tools"))
    import benchmark  # in-process: the checks run before any model is built
    from nvpt.cli import run_main

    dump_config(tiny_cfg(), tmp_path / "tiny.yaml")
    for args, message in ((["--repeats", "0"], "--repeats must be >= 1"),
                          (["--sfl-batches", "0", "4"], "--sfl-batches and --time-steps must be >= 1"),
                          (["--sfl-batches", "8", "8"], "at least two different batch sizes"),
                          (["prompt.lenght=3"], "unknown config key 'prompt.lenght'"),
                          (["--device", "tpu"], "invalid choice")):
        assert run_main(benchmark.main, [str(tmp_path / "tiny.yaml"), *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.strip().count("\n") == 0


def test_models_share_one_backbone_and_the_bare_one_has_no_hooks(tmp_path):
    import torch

    from nvpt.benchmark import BenchmarkArgs, build_models

    dump_config(tiny_cfg(), tmp_path / "tiny.yaml")
    built = build_models(BenchmarkArgs(str(tmp_path / "tiny.yaml"), time_steps=[2, 4]), torch.device("cpu"))
    bare = built["bare"]
    reference = bare.state_dict()
    qkv, head = bare.blocks[0].attn.qkv.weight, bare.get_classifier().weight
    for model in [built["vpt"], built["spike"], built["deployed"], *built["per_t"].values()]:
        assert model.backbone is not bare
        assert all(torch.equal(reference[k], v) for k, v in model.backbone.state_dict().items())
        # one copy of the frozen weights in memory; the head, which trains, is each model's own
        assert model.backbone.blocks[0].attn.qkv.weight.data_ptr() == qkv.data_ptr()
        assert model.backbone.get_classifier().weight.data_ptr() != head.data_ptr()
        assert not qkv.requires_grad and model.backbone.get_classifier().weight.requires_grad
        trainable = {n for n, p in model.named_parameters() if p.requires_grad}
        assert trainable and all(n.startswith(("prompts.", "backbone.head.")) for n in trainable), trainable
    # the prompted backbones carry the prompt hooks; the bare timm model carries none
    assert any(block._forward_pre_hooks for block in built["vpt"].backbone.blocks)
    assert not any(m._forward_pre_hooks or m._forward_hooks for m in bare.modules())
    images = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(bare(images), built["vpt"].backbone(images))  # hooks idle outside PromptedViT.forward


def test_eval_benchmark_tiny_structure_and_gpu_figures(tmp_path):
    """make benchmark-eval in miniature (demo ViT only, 1 repeat): every set timed today and at 5fb576b, the loader,
    checkpoint I/O; then gpu_check.sh's figures from it, which nvpt.cost reads as measured."""
    from nvpt.benchmark_eval import BASELINE, EvalBenchArgs, eval_benchmark, eval_report, gpu_figures
    from nvpt.cost import Assumptions, figure, with_figures

    args = EvalBenchArgs(corrupt_images=1, forward_images=1, loader_images=2, repeats=1, io_mb=1, models=("demo ViT",))
    result = eval_benchmark(args, torch.device("cpu"), log=lambda _m: None, workdir=tmp_path)
    assert result["baseline"] == BASELINE and result["loader"]["jpeg_size"] == [500, 375]
    assert result["loader"]["uncached_images_per_s"] > 0 and result["loader"][f"uncached_{BASELINE}_images_per_s"] > 0
    demo = result["eval"]["demo ViT"]
    assert len(demo["sets"]) == 1 + 24 and demo["img_size"] == 32 and demo["table"] == "cifar"
    for key, row in demo["sets"].items():
        assert row["pipeline_images_per_s"] > 0
        if key != "clean":
            assert row["pipeline_ratio"] > 0 and row[f"corrupt_images_per_s_{BASELINE}"] > 0
    assert result["io"]["write_mb_per_s"] > 0 and not list(tmp_path.iterdir())  # its temporary files are gone
    text = eval_report(result)
    assert "shot_noise@5" in text and "checkpoint I/O" in text
    assert ("cached n/a" in text) == (result["loader"]["cached_images_per_s"] is None)

    result["eval"]["ViT-B/16"] = demo  # as the GPU run (eval-cuda.json) would hold it
    (tmp_path / "eval-cuda.json").write_text(json.dumps(result))
    row = {"images_per_s": 4000.0}
    (tmp_path / "benchmark-dtd-cuda.json").write_text(json.dumps({
        "device_name": "NVIDIA H200", "batch_size": 64, "training": {"vpt_deep": row},
        "inference": {"spike_nvpt_deployed": {"images_per_s": 9000.0}},
        "checks": [{"pass": True, "what": "deployed / VPT", "ratio": 1.0, "target": 1.01}]}))
    figures, fragment = gpu_figures(tmp_path)
    assert figures["device_name"] == "NVIDIA H200" and 0.2 < figures["mfu"] < 0.4
    assert figures["corrupt_ms_per_image"] > 0 and len(figures["corrupt_images_per_s"]) == 24
    assert "4,000 images/s" in fragment and "PASS: deployed / VPT" in fragment
    (tmp_path / "gpu_check.json").write_text(json.dumps(figures))
    assume = with_figures(Assumptions(), None, tmp_path / "gpu_check.json")
    assert figure(assume, "mfu")[0] == figures["mfu"] and "measured on NVIDIA H200" in figure(assume, "mfu")[1]


def test_gpu_check_script_parses():
    script = ROOT / "tools" / "gpu_check.sh"
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    text = script.read_text()
    for needed in ("--eval --device cuda --eval-sets all", "tools/reproduce_paper.py", "spike.backend=cupy",
                   "gpu_figures", "import cupy", "--batch-size 64"):
        assert needed in text
