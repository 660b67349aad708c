"""Engine: schedule, checkpoints, a real short training run, exact resume, 2-process DDP."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import tiny_cfg
from nvpt.engine import run as run_module
from nvpt.engine.checkpoint import load_checkpoint, model_identity, read_checkpoint, save_checkpoint
from nvpt.engine.optim import WarmupCosine, build_optimizer, scaled_lr
from nvpt.pipeline import run_training
from nvpt.models import build_model

ROOT = Path(__file__).resolve().parent.parent
TEXTURES = ["data.name=textures", "data.crop_size=32", "data.train_per_class=4", "data.test_per_class=4",
            "data.val_fraction=0.25", "data.num_workers=0", "data.batch_size=8", "model.num_classes=null",
            "train.warmup_epochs=1", "train.base_lr=0.5", "eval.gaussian_std=[0.2]", "train.threads=1"]
TIMING = {"epoch_time_s"}


def quiet(_msg):
    pass


def strip_timing(history):
    return [{k: v for k, v in line.items() if k not in TIMING} for line in history]


def test_warmup_cosine_per_iteration():
    param = torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.SGD([param], lr=scaled_lr(0.4, 64))  # 0.4 * 64 / 256 = 0.1
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1)
    sched = WarmupCosine(opt, total_iters=10, warmup_iters=4, min_lr=0.0)
    lrs = [opt.param_groups[0]["lr"]]
    for _ in range(9):
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs[:4] == pytest.approx([0.025, 0.05, 0.075, 0.1])
    assert lrs[4] == pytest.approx(0.1)  # cosine starts at the peak
    assert lrs[7] == pytest.approx(0.05 * (1 + math.cos(math.pi * 3 / 6)))
    assert all(a >= b for a, b in zip(lrs[4:], lrs[5:]))


def test_no_weight_decay_on_biases_and_scales():
    model = build_model(tiny_cfg("prompt.method=spike_nvpt"))
    opt = build_optimizer(model, tiny_cfg().train, 64)
    decay_ids = {id(p) for p in opt.param_groups[0]["params"]}
    assert id(model.prompts.current) in decay_ids and id(model.backbone.head.weight) in decay_ids
    assert id(model.prompts.scale) not in decay_ids and id(model.backbone.head.bias) not in decay_ids


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_checkpoint_roundtrip_restores_optimizer_and_rng(tmp_path, optimizer):
    cfg = tiny_cfg("prompt.method=spike_nvpt", f"train.optimizer={optimizer}")
    model = build_model(cfg)
    opt = build_optimizer(model, cfg.train, 8)
    sched = WarmupCosine(opt, 10, 2, 0.0)
    for _ in range(2):
        model.train()
        model(torch.randn(2, 3, 32, 32)).sum().backward()
        opt.step()
        sched.step()
    save_checkpoint(tmp_path / "c.safetensors", model, model_identity(model, cfg), opt, sched, epoch=3, best={"acc": 1.0})
    expected_next = torch.rand(3)

    fresh = build_model(tiny_cfg("prompt.method=spike_nvpt", f"train.optimizer={optimizer}", "seed=9"))
    fresh_opt = build_optimizer(fresh, cfg.train, 8)
    fresh_sched = WarmupCosine(fresh_opt, 10, 2, 0.0)
    meta = load_checkpoint(tmp_path / "c.safetensors", fresh, model_identity(fresh, cfg), fresh_opt, fresh_sched)
    assert meta["epoch"] == 3 and fresh_sched.iteration == 2
    assert torch.equal(fresh.prompts.current, model.prompts.current)
    assert int(fresh.prompts.noise_step) == 2  # the noise stream continues where it stopped
    for a, b in zip(opt.state_dict()["state"].values(), fresh_opt.state_dict()["state"].values()):
        for key in a:
            assert torch.equal(torch.as_tensor(a[key]), torch.as_tensor(b[key])), key
    assert torch.equal(torch.rand(3), expected_next)  # the RNG state came back too
    tensors, _ = read_checkpoint(tmp_path / "c.safetensors")
    assert not any(k.startswith("model/backbone.blocks") for k in tensors)  # only what trains


def test_short_training_run_learns(tmp_path):
    cfg = tiny_cfg("prompt.method=vpt_deep", "train.epochs=6", "data.train_per_class=8", f"output_dir={tmp_path}",
                   *TEXTURES[1:], "data.name=textures")
    result = run_training(cfg, log=quiet, show_progress=False)
    files = {p.name for p in result.run_dir.iterdir()}
    assert {"config.yaml", "metrics.jsonl", "checkpoint-last.safetensors", "checkpoint-best.safetensors",
            "results.json", "results.md"} <= files
    lines = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines] == list(range(6))
    assert lines[-1]["train_loss"] < lines[0]["train_loss"]
    chance = 100 / 20
    assert result.summary["clean"] > 2 * chance  # 20 texture classes
    assert set(result.summary["sets"]) == {"gaussian@0.2"}


def test_resume_continues_exactly(tmp_path, monkeypatch):
    args = ["prompt.method=spike_nvpt", "prompt.dropout=0.2", "spike.noise_std=0.5", "train.epochs=3", *TEXTURES]
    full = run_training(tiny_cfg(*args, f"output_dir={tmp_path}", "run_name=full"), log=quiet, show_progress=False)

    real_epoch = run_module.train_one_epoch

    def dies_in_epoch_two(*a, **kw):
        if a[6] == 2:  # the epoch argument
            raise KeyboardInterrupt
        return real_epoch(*a, **kw)

    monkeypatch.setattr(run_module, "train_one_epoch", dies_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        run_training(tiny_cfg(*args, f"output_dir={tmp_path}", "run_name=cut"), log=quiet, show_progress=False)
    assert not (tmp_path / "cut" / "results.json").exists()  # an unfinished run does not look complete
    monkeypatch.setattr(run_module, "train_one_epoch", real_epoch)
    resumed = run_training(tiny_cfg(*args, f"output_dir={tmp_path}", f"train.resume={tmp_path / 'cut'}"),
                           log=quiet, show_progress=False)
    assert resumed.run_dir == tmp_path / "cut"
    assert strip_timing(resumed.history) == strip_timing(full.history)
    assert resumed.summary["clean"] == full.summary["clean"]
    assert resumed.summary["sets"] == full.summary["sets"]


def test_existing_run_folder_is_not_overwritten(tmp_path):
    from nvpt.errors import NVPTError

    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "metrics.jsonl").write_text("{}\n")
    with pytest.raises(NVPTError, match="already exists; pass train.resume="):
        run_training(tiny_cfg(*TEXTURES, f"output_dir={tmp_path}", "run_name=taken"), log=quiet)


def test_torchrun_two_processes_match_one(tmp_path):
    """Two gloo processes with half the batch each give the accuracy of one process."""
    args = ["prompt.method=vpt_deep", "train.epochs=2", *TEXTURES, f"output_dir={tmp_path}"]
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    config = tmp_path / "tiny.yaml"
    config.write_text(_tiny_yaml())
    single = subprocess.run([sys.executable, "tools/train.py", str(config), *args, "run_name=one"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert single.returncode == 0, single.stderr[-2000:]
    torchrun = Path(sys.executable).parent / "torchrun"
    double = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node=2", "tools/train.py", str(config),
                             *args, "run_name=two"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert double.returncode == 0, double.stderr[-3000:]
    one = json.loads((tmp_path / "one" / "results.json").read_text())
    two = json.loads((tmp_path / "two" / "results.json").read_text())
    assert two["clean"] == one["clean"] and two["sets"]["gaussian@0.2"]["accuracy"] == one["sets"]["gaussian@0.2"]["accuracy"]
    m1 = [json.loads(line) for line in (tmp_path / "one" / "metrics.jsonl").read_text().splitlines()]
    m2 = [json.loads(line) for line in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    for a, b in zip(m1, m2):
        assert a["val_acc"] == b["val_acc"]
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)


def _tiny_yaml() -> str:
    from conftest import TINY

    lines = {}
    for item in TINY:
        key, value = item.split("=", 1)
        section, leaf = key.split(".")
        lines.setdefault(section, []).append(f"  {leaf}: {value!r}" if leaf == "kwargs" else f"  {leaf}: {value}")
    return "".join(f"{section}:\n" + "\n".join(body) + "\n" for section, body in lines.items())
