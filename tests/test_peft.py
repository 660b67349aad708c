"""The conventional PEFT baselines (BitFit, AdaptFormer adapter, LoRA through peft, SSF): exactly what trains,
deploy folds them with the same outputs, exact resume, a 2-process DDP run, LoRA from peft."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from conftest import TINY, tiny_cfg
from nvpt.engine.checkpoint import checkpoint_state, model_identity, read_checkpoint, save_checkpoint
from nvpt.engine.loop import Normalize, evaluate
from nvpt.engine.optim import build_optimizer
from nvpt.engine.restore import load_run
from nvpt.engine.run import DistInfo, make_loader, prepare_data
from nvpt.errors import NVPTError
from nvpt.models import build_model, create_backbone
from nvpt.pipeline import run_training
from test_engine import TEXTURES, _tiny_yaml, full_cut_resumed, quiet

ROOT = Path(__file__).resolve().parent.parent
IMAGES = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(3))
BLOCKS = range(3)  # TINY: depth 3, width 48, 3 heads, MLP 192, 5 classes, 8-px patches
HEAD = {"backbone.head.weight", "backbone.head.bias"}
METHODS = {  # method -> (overrides, trainable parameter names, their count worked out by hand)
    "bitfit": ([], {"backbone.patch_embed.proj.bias", "backbone.norm.bias"} | {
        f"backbone.blocks.{i}.{m}.bias" for i in BLOCKS
        for m in ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2")},
        # patch 48 + 3 x (norm1 48 + qkv 144 + proj 48 + norm2 48 + fc1 192 + fc2 48) + norm 48 + head 48*5+5
        48 + 3 * 528 + 48 + 245),
    "adapter": (["adapter.bottleneck=8"], {
        f"backbone.blocks.{i}.mlp.adapter.{p}.{t}" for i in BLOCKS for p in ("down", "up") for t in ("weight", "bias")},
        3 * ((48 * 8 + 8) + (8 * 48 + 48)) + 245),
    "lora": (["lora.rank=4"], {
        f"backbone.blocks.{i}.attn.qkv.lora_{ab}.default.weight" for i in BLOCKS for ab in "AB"},
        3 * (4 * 48 + 144 * 4) + 245),  # A [r, 48], B [144, r] per qkv
    "lora_mlp": (["lora.rank=4", "lora.mlp=true"], {
        f"backbone.blocks.{i}.{m}.lora_{ab}.default.weight" for i in BLOCKS for ab in "AB"
        for m in ("attn.qkv", "mlp.fc1", "mlp.fc2")},
        3 * (4 * 48 + 144 * 4 + 4 * 48 + 192 * 4 + 4 * 192 + 48 * 4) + 245),
    "ssf": ([], {f"backbone.{m}.ssf.{t}" for t in ("scale", "shift") for m in (
        "patch_embed.proj", "norm", *(f"blocks.{i}.{op}" for i in BLOCKS
                                      for op in ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2")))},
        2 * (48 + 3 * 528 + 48) + 245),  # a scale and a shift per output channel of every op
}


def method_cfg(key: str, *overrides: str):
    extra, _, _ = METHODS[key]
    return tiny_cfg(f"prompt.method={key.split('_')[0]}", *extra, *overrides)


def moved(model, seed: int = 11):
    """Every trainable parameter moved off its init (LoRA's B and the adapters' up start at zero: a deploy that
    dropped them would still match at init)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=gen) * 0.2)
    return model


@pytest.mark.parametrize("key", list(METHODS))
def test_exactly_the_claimed_parameters_train(key):
    _, names, count = METHODS[key]
    model = build_model(method_cfg(key))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == names | HEAD
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == count
    # checkpoints hold these and nothing of the frozen backbone; the optimizer steps these
    assert set(checkpoint_state(model)) == names | HEAD
    optimizer = build_optimizer(model, method_cfg(key).train, 8)
    stepped = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert stepped == {id(p) for p in model.parameters() if p.requires_grad}
    # training mode: the frozen backbone stays in eval mode, the method's own modules (their dropout) train
    model.train()
    assert not model.backbone.blocks[0].attn.training
    assert all(m.training for m in model.tuned_modules())
    assert bool(model.tuned_modules()) == (key != "bitfit")


# A deployed model computes the same function in another order of float32 operations: LoRA's x W^T + s (x A^T) B^T
# becomes x (W + s B A)^T, SSF's g * (W x + b) + beta becomes (g W) x + (g b + beta). Each reassociation changes a
# result by a few float32 ulps (2^-24 = 6e-8 relative) of the values it sums; through 3 blocks of 48- to 192-term
# sums, residual adds and LayerNorms that stays far below 1e-5 of the logits' scale, while a fold that drops or
# misplaces a scale or shift (moved(): offsets of ~0.2) changes the logits by > 1e-2 of their scale.
REL_TOL = 1e-5


@pytest.mark.parametrize("key", list(METHODS))
def test_deploy_folds_into_the_bare_backbone_with_the_same_logits(key):
    cfg = method_cfg(key)
    torch.manual_seed(0)
    model = moved(build_model(cfg)).eval()
    with torch.no_grad():
        before = model(IMAGES)
        after = model.deploy()(IMAGES)
    scale = before.abs().max().item()
    assert (after - before).abs().max().item() <= REL_TOL * scale, (after - before).abs().max().item() / scale
    bare = create_backbone(cfg)
    has_hooks = [n for n, m in model.backbone.named_modules() if m._forward_hooks or m._forward_pre_hooks]
    if key == "adapter":  # a ReLU bottleneck: nothing to fold, the adapters stay (and compute what they did)
        assert torch.equal(after, before)
        assert has_hooks == [f"blocks.{i}.mlp" for i in BLOCKS]
        return
    # the deployed backbone is timm's plain model: the same modules, parameters and state (new values), no hooks
    assert has_hooks == []
    assert [type(m) for m in model.backbone.modules()] == [type(m) for m in bare.modules()]
    assert {k: v.shape for k, v in model.backbone.state_dict().items()} == {k: v.shape for k, v in bare.state_dict().items()}
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in bare.parameters())
    bare.load_state_dict(model.backbone.state_dict())
    with torch.no_grad():
        assert torch.equal(bare.eval()(IMAGES), after)  # deployed == timm's own forward with the folded weights


def test_a_fold_that_drops_the_shift_is_caught():
    """The tolerance above tells a right fold from a wrong one: SSF folded without its shifts fails it."""
    model = moved(build_model(method_cfg("ssf"))).eval()
    with torch.no_grad():
        before = model(IMAGES)
        for m in model.backbone.modules():
            if hasattr(m, "ssf"):
                m.ssf.shift.zero_()
        after = model.deploy()(IMAGES)
    assert (after - before).abs().max().item() > 100 * REL_TOL * before.abs().max().item()


def test_lora_comes_from_peft():
    from peft.tuners.lora import Linear as PeftLoraLinear, LoraLayer

    cfg = method_cfg("lora", "lora.alpha=16", "lora.dropout=0.1")
    torch.manual_seed(0)
    model = build_model(cfg)
    torch.manual_seed(0)
    bare = create_backbone(cfg)
    for i in BLOCKS:
        qkv = model.backbone.blocks[i].attn.qkv
        assert isinstance(qkv, PeftLoraLinear) and isinstance(qkv, LoraLayer)
        assert qkv.r["default"] == 4 and qkv.scaling["default"] == 16 / 4 and qkv.lora_dropout["default"].p == 0.1
        assert torch.equal(qkv.get_base_layer().weight, bare.blocks[i].attn.qkv.weight)  # timm's frozen weight
        assert not isinstance(model.backbone.blocks[i].mlp.fc1, LoraLayer)  # lora.mlp=false
    assert sum(isinstance(m, LoraLayer) for m in model.modules()) == len(BLOCKS)
    model.deploy()
    assert not any(isinstance(m, LoraLayer) for m in model.modules())


def test_lora_without_peft_is_one_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "peft", None)  # `import peft` raises ImportError
    with pytest.raises(NVPTError, match=r"prompt.method=lora needs Hugging Face peft .*pip install 'peft==0.21.2'"):
        build_model(method_cfg("lora"))


def test_only_lora_imports_peft():
    code = ("import sys; sys.path.insert(0, 'tests'); from conftest import tiny_cfg; from nvpt.models import build_model\n"
            "for m in ('bitfit', 'adapter', 'ssf'): build_model(tiny_cfg('prompt.method=' + m)).deploy()\n"
            "assert 'peft' not in sys.modules and 'transformers' not in sys.modules, 'imported peft'")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.parametrize("key,recipe", [
    ("bitfit", ["train.optimizer=sgd"]), ("adapter", ["train.optimizer=sgd", "adapter.dropout=0.2"]),
    ("lora", ["train.optimizer=adamw", "train.base_lr=0.01", "lora.dropout=0.2"]),
    ("ssf", ["train.optimizer=adamw", "train.base_lr=0.01"]),
])
def test_resume_is_exact_and_the_run_reloads(tmp_path, monkeypatch, key, recipe):
    """Dropout in the adapter and in LoRA draws from the global RNG: the resumed run must draw the same numbers."""
    full, resumed = full_cut_resumed(monkeypatch, tmp_path,
                                     lambda *extra: method_cfg(key, *TEXTURES, *recipe, "train.epochs=2", *extra), 1)
    results = json.loads((tmp_path / "full" / "results.json").read_text())
    assert results["trainable_params"] == METHODS[key][2] - 245 + 20 * 48 + 20  # the head has 20 texture classes
    assert results["method"] == key and results["prompt_bits"] == 0
    ta, _ = read_checkpoint(full.run_dir / "checkpoint-best.safetensors")
    tb, _ = read_checkpoint(resumed.run_dir / "checkpoint-best.safetensors")
    assert ta.keys() == tb.keys() == {f"model/{n}" for n in METHODS[key][1] | HEAD}  # the trainable parameters only
    assert all(torch.equal(ta[k], tb[k]) for k in ta)
    # the run folder reloads (tools/eval_robustness.py's path: load_run, deploy) to the evaluated accuracy
    loaded = load_run(full.run_dir)
    model = loaded.model.deploy()
    bundle, _ = prepare_data(loaded.cfg)
    loader = make_loader(bundle.test, 64, loaded.cfg, DistInfo(), False, torch.device("cpu"))
    assert evaluate(model, loader, Normalize(bundle.mean, bundle.std), torch.device("cpu"))["acc"] == full.summary["clean"]


def test_export_prompts_refuses_a_peft_run(tmp_path):
    from nvpt.config import dump_config
    from nvpt.export import export_packed

    cfg = method_cfg("lora")
    model = build_model(cfg)
    (tmp_path / "lora").mkdir()
    dump_config(cfg, tmp_path / "lora" / "config.yaml")
    save_checkpoint(tmp_path / "lora" / "checkpoint-best.safetensors", model, model_identity(model, cfg), epoch=0)
    with pytest.raises(NVPTError, match=r"only spike_nvpt runs can be bit-packed; .* lora run \(it has no prompts"):
        export_packed(tmp_path / "lora")


DDP_SCRIPT = """
import json, sys
from nvpt.config import load_config
from nvpt.engine.distributed import cleanup, init_distributed
from nvpt.engine.run import train

config, args = sys.argv[1], json.loads(sys.argv[2])
dist = init_distributed("cpu")
try:
    for method, extra in args["methods"].items():
        cfg = load_config(config, [*args["common"], *extra, f"prompt.method={method}", f"run_name={method}-two"])
        train(cfg, dist, config, log=lambda m: None, show_progress=False)
        print(f"rank {dist.rank} of {dist.world_size} trained {method}", flush=True)
finally:
    cleanup()
"""


def test_two_processes_train_what_one_trains(tmp_path):
    """One torchrun of 2 gloo processes trains every method (half the batch each); the trained tensors equal
    one process's with the whole batch."""
    config = tmp_path / "tiny.yaml"
    config.write_text(_tiny_yaml())
    common = [*TEXTURES, "train.epochs=2", f"output_dir={tmp_path}"]
    methods = {key.split("_")[0]: METHODS[key][0] for key in ("bitfit", "adapter", "lora", "ssf")}
    script = tmp_path / "ddp_methods.py"
    script.write_text(DDP_SCRIPT)
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    torchrun = Path(sys.executable).parent / "torchrun"
    two = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node=2", str(script), str(config),
                          json.dumps({"common": common, "methods": methods})],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert two.returncode == 0, two.stderr[-3000:]
    for method in methods:
        assert all(f"rank {r} of 2 trained {method}" in two.stdout for r in (0, 1)), two.stdout
        one = run_training(method_cfg(method, *common, f"run_name={method}-one"), log=quiet, show_progress=False)
        for name in ("checkpoint-last.safetensors", "checkpoint-best.safetensors"):
            t1, _ = read_checkpoint(one.run_dir / name)
            t2, _ = read_checkpoint(tmp_path / f"{method}-two" / name)
            model1 = {k: v for k, v in t1.items() if k.startswith("model/")}
            model2 = {k: v for k, v in t2.items() if k.startswith("model/")}
            assert model1.keys() == model2.keys() == {f"model/{n}" for n in METHODS[method][1] | HEAD}
            for key, value in model1.items():
                torch.testing.assert_close(model2[key], value, rtol=1e-5, atol=1e-6, msg=lambda m: f"{method} {key}: {m}")
        m1 = [json.loads(x) for x in (one.run_dir / "metrics.jsonl").read_text().splitlines()]
        m2 = [json.loads(x) for x in (tmp_path / f"{method}-two" / "metrics.jsonl").read_text().splitlines()]
        assert [(a["val_acc"], a["train_acc"]) for a in m1] == [(b["val_acc"], b["train_acc"]) for b in m2]


def test_accuracy_robustness_table_and_figure(tmp_path):
    from nvpt.robustness.compare import compare_runs, parameters_markdown, plot_accuracy_robustness
    from nvpt.robustness.report import summarize

    def result(seed, clean, noisy):
        return {**summarize(clean, {"gaussian_noise@1": noisy, "gaussian@0.1": noisy - 2}), "seed": seed}

    comp = compare_runs({"lora": [result(0, 80.0, 60.0), result(1, 82.0, 64.0)],
                         "vpt_deep": [result(0, 79.0, 50.0), result(1, 81.0, 52.0)]}, reference="vpt_deep")
    table = parameters_markdown(comp, {"lora": 22676, "vpt_deep": None})
    assert "| lora | 22,676 | 81.00 ± 1.41" in table and "| vpt_deep | n/a | 80.00 ± 1.41" in table
    assert "| 61.00 ± 2.83" in table  # lora's mCA per seed: (60 + 58) / 2 = 59, (64 + 62) / 2 = 63
    written = plot_accuracy_robustness(comp, tmp_path / "ar", {"lora": 22676})
    assert [p.name for p in written] == ["ar.png", "ar.pdf"] and all(p.stat().st_size > 0 for p in written)
    clean_only = compare_runs({"lora": [{**summarize(80.0, {}), "seed": 0}]}, reference="lora")
    with pytest.raises(NVPTError, match="needs corrupted sets"):
        plot_accuracy_robustness(clean_only, tmp_path / "none")


def test_a_methods_own_keys_matter_to_that_method_only():
    """A run folder is reused when only another method's keys differ (base.yaml sets the adapter and LoRA sizes)."""
    from nvpt.engine.plan import config_differences

    saved = tiny_cfg("prompt.method=vpt_deep")
    assert config_differences(tiny_cfg("prompt.method=vpt_deep", "adapter.bottleneck=16", "lora.rank=2"), saved) == []
    lora = tiny_cfg("prompt.method=lora", "lora.rank=4")
    assert config_differences(tiny_cfg("prompt.method=lora", "lora.rank=2", "adapter.bottleneck=16"), lora) == ["lora.rank"]


# ----------------------------------------------------------------------------- tools/reproduce_study.sh plumbing

# the comparison's task shrunk to a few seconds a run (20 training images, one step, two noisy sets), in tmp_path
TINY_STUDY = ("train.warmup_epochs=0 train.max_steps_per_epoch=1 data.train_per_class=1 data.val_per_class=2 "
              "data.test_per_class=2 eval.corruptions=[gaussian_noise] eval.severities=[1] eval.gaussian_std=[0.1]")


def peft_study(case: str, tmp_path: Path, *args: str, **env) -> subprocess.CompletedProcess:
    full = {**os.environ, "PY": sys.executable, "PEFT_OUT": str(tmp_path / "select"), "RECIPES": str(tmp_path / "recipes"),
            "PEFT_DOCS": str(tmp_path / "docs"), "FINAL_OUT": str(tmp_path / "final"), "SEL_SEEDS": "1",
            "FINAL_SEEDS": "1", "EPOCHS": "1 2", "EXTRA": f"{TINY_STUDY} output_dir={tmp_path / 'runs'}", **env}
    return subprocess.run(["bash", str(ROOT / "tools" / "reproduce_study.sh"), case, *args], env=full,
                          capture_output=True, text=True, timeout=300)


def test_reproduce_study_peft_select_and_a_part_of_the_final(tmp_path):
    done = peft_study("peft-select", tmp_path, "bitfit")
    assert done.returncode == 0, done.stderr[-2000:]
    points = sorted(p.parent.name for p in (tmp_path / "select" / "bitfit").glob("*/comparison.json"))
    assert {"lr0.0625-e1", "lr0.25-e1", "lr1-e1"} <= set(points) and len(points) in (4, 5)
    recipe = yaml.safe_load((tmp_path / "recipes" / "bitfit.yaml").read_text())
    assert recipe["prompt"]["method"] == "bitfit" and f"lr{recipe['train']['base_lr']}-e{recipe['train']['epochs']}" in points
    shown = (tmp_path / "docs" / "select_bitfit.md").read_text()
    assert all(f"| {p} |" in shown or f"| **{p}** |" in shown for p in points)
    # the full final refuses to start without every baseline's recipe, in one line, before anything trains
    refused = peft_study("peft-final", tmp_path)
    assert refused.returncode == 2 and "error: no " in refused.stderr and "peft-select" in refused.stderr
    assert not (tmp_path / "runs").exists()
    # a part (as on a second core): its runs, on the test split, that the full call reuses
    part = peft_study("peft-final", tmp_path, ONLY=f"linear {tmp_path / 'recipes' / 'bitfit.yaml'}")
    assert part.returncode == 0, part.stderr[-2000:]
    runs = sorted(p.parent.name for p in (tmp_path / "runs").glob("*/results.json"))
    assert runs == ["peft-bitfit-s0", "peft-linear-s0"]
    assert json.loads((tmp_path / "runs" / "peft-bitfit-s0" / "results.json").read_text())["split"] == "test"
    assert not (tmp_path / "docs" / "comparison.md").exists()
