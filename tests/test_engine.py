"""Engine: schedule, checkpoints, a real short training run, exact resume, 2-process DDP."""
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import tiny_cfg
from nvpt.config import load_config
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
    saved, loaded = opt.state_dict(), fresh_opt.state_dict()
    expected_keys = {"sgd": {"momentum_buffer"}, "adamw": {"step", "exp_avg", "exp_avg_sq"}}[optimizer]
    trainable = sum(p.requires_grad for p in model.parameters())
    assert len(saved["state"]) == trainable and loaded["state"].keys() == saved["state"].keys()
    for index, state in saved["state"].items():
        assert state.keys() == loaded["state"][index].keys() == expected_keys, index
        for key, value in state.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(loaded["state"][index][key])), (index, key)
    as_json = json.dumps  # the checkpoint keeps param groups as JSON: AdamW's betas tuple comes back a list
    assert as_json(loaded["param_groups"]) == as_json(saved["param_groups"])
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


def full_cut_resumed(monkeypatch, tmp_path, cfg_of, die_in: int):
    """A run trained straight through, and the same run interrupted in epoch `die_in` and resumed: they must agree
    exactly (history, clean and noisy accuracy). cfg_of(*overrides) -> the config. Returns (full, resumed)."""
    full = run_training(cfg_of(f"output_dir={tmp_path}", "run_name=full"), log=quiet, show_progress=False)
    real_epoch = run_module.train_one_epoch

    def dies(*a, **kw):
        if a[6] == die_in:  # the epoch argument
            raise KeyboardInterrupt
        return real_epoch(*a, **kw)

    monkeypatch.setattr(run_module, "train_one_epoch", dies)
    with pytest.raises(KeyboardInterrupt):
        run_training(cfg_of(f"output_dir={tmp_path}", "run_name=cut"), log=quiet, show_progress=False)
    assert not (tmp_path / "cut" / "results.json").exists()  # an unfinished run does not look complete
    monkeypatch.setattr(run_module, "train_one_epoch", real_epoch)
    resumed = run_training(cfg_of(f"output_dir={tmp_path}", f"train.resume={tmp_path / 'cut'}"),
                           log=quiet, show_progress=False)
    assert resumed.run_dir == tmp_path / "cut"
    written = json.loads((resumed.run_dir / "results.json").read_text())
    spiking = resumed.run_dir.joinpath("config.yaml").read_text().count("method: spike_nvpt") > 0
    assert (written["sfl_backend"], written["device"]) == ("torch" if spiking else "none", "cpu")
    assert strip_timing(resumed.history) == strip_timing(full.history)
    assert resumed.summary["clean"] == full.summary["clean"]
    assert resumed.summary["sets"] == full.summary["sets"]
    return full, resumed


@pytest.mark.parametrize("recipe", [
    ["prompt.method=spike_nvpt", "prompt.dropout=0.2", "spike.noise_std=0.5"],  # SGD with momentum
    ["prompt.method=full", "train.optimizer=adamw", "train.base_lr=0.002", "train.weight_decay=0.05"],  # the full configs
    # a 16 px Swin (nvpt.models.prompted_swin): an 8x8 grid in 2x2 windows, then 4x4; corruptions evaluated too
    ["model.name=swin_tiny_patch4_window7_224", "model.img_size=16", "data.crop_size=16",
     "model.kwargs={patch_size: 2, window_size: 2, embed_dim: 16, depths: [1, 2], num_heads: [1, 2]}",
     "prompt.method=spike_nvpt", "prompt.dropout=0.2", "eval.corruptions=[gaussian_noise]", "eval.severities=[3]"],
], ids=["spike_nvpt-sgd", "full-adamw", "swin-spike_nvpt"])
def test_resume_continues_exactly(tmp_path, monkeypatch, recipe):
    full_cut_resumed(monkeypatch, tmp_path, lambda *extra: tiny_cfg(*TEXTURES, *recipe, "train.epochs=3", *extra), 2)


def test_existing_run_folder_is_not_overwritten(tmp_path):
    from nvpt.errors import NVPTError

    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "metrics.jsonl").write_text("{}\n")
    with pytest.raises(NVPTError, match="already exists; pass train.resume="):
        run_training(tiny_cfg(*TEXTURES, f"output_dir={tmp_path}", "run_name=taken"), log=quiet)


def ddp_workers(stderr: str) -> dict[int, dict[str, str]]:
    """{torchrun local rank: torch's own "DDP Initialized with:" record of that worker}.

    torchrun --tee=3 prefixes each worker's lines with [default<local rank>]:; TORCH_CPP_LOG_LEVEL=INFO and
    TORCH_DISTRIBUTED_DEBUG=INFO make torch log the record (rank, world_size, module_name, ...)."""
    lines: dict[int, list[str]] = {}
    for line in stderr.splitlines():
        match = re.match(r"\[default(\d+)\]:(.*)", line)
        if match:
            lines.setdefault(int(match[1]), []).append(match[2])
    workers = {}
    for local, own in lines.items():
        starts = [i for i, text in enumerate(own) if "DDP Initialized with:" in text]
        if starts:
            record = own[starts[0] + 1:]
            record = record[:record.index("")] if "" in record else record
            workers[local] = dict(item.split(": ", 1) for item in record if ": " in item)
    return workers


@pytest.mark.parametrize("method", ["vpt_deep", "spike_nvpt"])
def test_torchrun_two_processes_match_one(tmp_path, method):
    """Two gloo processes with half the batch each train the prompts of one process with the whole batch.

    For spike_nvpt this holds only if the SFL noise is the same on every rank: different noise per rank
    would average two noisy gradients that one process never computes."""
    args = [f"prompt.method={method}", "spike.noise_std=0.5", "train.epochs=2", *TEXTURES, f"output_dir={tmp_path}"]
    config = tmp_path / "tiny.yaml"
    config.write_text(_tiny_yaml())
    lines = []  # the one-process reference runs in this interpreter: one torch start-up less
    run_training(load_config(config, [*args, "run_name=one"]), config_path=config, log=lines.append, show_progress=False)
    assert any(line.startswith("run folder") for line in lines)
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT),
               TORCH_CPP_LOG_LEVEL="INFO", TORCH_DISTRIBUTED_DEBUG="INFO")  # torch logs each rank's DDP set-up
    torchrun = Path(sys.executable).parent / "torchrun"
    double = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node=2", "--tee=3", "tools/train.py", str(config),
                             *args, "run_name=two"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert double.returncode == 0, double.stderr[-3000:]
    # two processes ran, each wrapped the model in DDP as its own rank of a world of 2; only rank 0 spoke
    workers = ddp_workers(double.stderr)
    assert {local: (w.get("rank"), w.get("world_size"), w.get("module_name")) for local, w in workers.items()} == {
        0: ("0", "2", "PromptedViT"), 1: ("1", "2", "PromptedViT")}, double.stderr[-3000:]
    assert [line for line in double.stdout.splitlines() if "run folder" in line] == [
        f"[default0]:run folder {tmp_path / 'two'}: " + lines[0].split(": ", 1)[1]]

    # the trained tensors themselves: prompts, scale, head, the noise counter
    for name in ("checkpoint-last.safetensors", "checkpoint-best.safetensors"):
        t1, _ = read_checkpoint(tmp_path / "one" / name)
        t2, _ = read_checkpoint(tmp_path / "two" / name)
        model1 = {k: v for k, v in t1.items() if k.startswith("model/")}
        model2 = {k: v for k, v in t2.items() if k.startswith("model/")}
        expected = {"vpt_deep": {"model/prompts.tokens"},
                    "spike_nvpt": {"model/prompts.current", "model/prompts.scale", "model/prompts.noise_step"}}[method]
        assert model1.keys() == model2.keys() == expected | {"model/backbone.head.weight", "model/backbone.head.bias"}
        for key, value in model1.items():
            torch.testing.assert_close(model2[key], value, rtol=1e-5, atol=1e-6, msg=lambda m: f"{name} {key}: {m}")
    if method == "spike_nvpt":  # one noise draw per training step, on every rank
        steps = math.ceil(int(re.search(r"\((\d+) train images", lines[0])[1]) / 8)
        assert int(model1["model/prompts.noise_step"]) == 2 * steps
    one = json.loads((tmp_path / "one" / "results.json").read_text())
    two = json.loads((tmp_path / "two" / "results.json").read_text())
    assert two["clean"] == one["clean"] and two["sets"] == one["sets"]
    m1 = [json.loads(line) for line in (tmp_path / "one" / "metrics.jsonl").read_text().splitlines()]
    m2 = [json.loads(line) for line in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in m1] == [m["epoch"] for m in m2] == [0, 1]
    for a, b in zip(m1, m2):
        assert a.keys() == b.keys()
        assert (a["val_acc"], a["train_acc"], a["best_epoch"]) == (b["val_acc"], b["train_acc"], b["best_epoch"])
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        if method == "spike_nvpt":
            assert a["firing_rate"] == pytest.approx(b["firing_rate"], rel=1e-5)


def _tiny_yaml() -> str:
    from conftest import TINY

    lines = {}
    for item in TINY:
        key, value = item.split("=", 1)
        section, leaf = key.split(".")
        lines.setdefault(section, []).append(f"  {leaf}: {value!r}" if leaf == "kwargs" else f"  {leaf}: {value}")
    return "".join(f"{section}:\n" + "\n".join(body) + "\n" for section, body in lines.items())


def test_save_every_without_validation_resumes_exactly_and_writes_best_once(tmp_path, monkeypatch):
    """train.save_every=2 over 4 epochs with no validation split: checkpoint-last after epochs 1 and 3, checkpoint-best
    once (the final model); a run stopped in epoch 3 (epoch 2 trained but not saved) resumes to the same result."""
    args = [*TEXTURES, "data.val_fraction=0", "prompt.method=linear", "train.epochs=4", "train.save_every=2",
            "train.warmup_epochs=1", f"output_dir={tmp_path}"]
    real_save, saves = run_module.save_checkpoint, []

    def recording_save(path, *a, **kw):
        saves.append((Path(path).name, kw["epoch"]))
        return real_save(path, *a, **kw)

    monkeypatch.setattr(run_module, "save_checkpoint", recording_save)
    full = run_training(tiny_cfg(*args, "run_name=full"), log=quiet, show_progress=False)
    assert saves == [("checkpoint-last.safetensors", 1), ("checkpoint-best.safetensors", 3),
                     ("checkpoint-last.safetensors", 3)]
    assert read_checkpoint(full.run_dir / "checkpoint-best.safetensors")[1]["epoch"] == 3

    real_epoch = run_module.train_one_epoch

    def dies_in_epoch_three(*a, **kw):
        if a[6] == 3:
            raise KeyboardInterrupt
        return real_epoch(*a, **kw)

    monkeypatch.setattr(run_module, "train_one_epoch", dies_in_epoch_three)
    with pytest.raises(KeyboardInterrupt):
        run_training(tiny_cfg(*args, "run_name=cut"), log=quiet, show_progress=False)
    cut = tmp_path / "cut"
    assert not (cut / "checkpoint-best.safetensors").exists()  # nothing selected yet: no best written per epoch
    assert read_checkpoint(cut / "checkpoint-last.safetensors")[1]["epoch"] == 1  # epoch 2 was not saved
    monkeypatch.setattr(run_module, "train_one_epoch", real_epoch)
    resumed = run_training(tiny_cfg(*args, f"train.resume={cut}"), log=quiet, show_progress=False)
    assert strip_timing(resumed.history) == strip_timing(full.history)
    assert resumed.summary["clean"] == full.summary["clean"]
    assert resumed.summary["sets"] == full.summary["sets"]
