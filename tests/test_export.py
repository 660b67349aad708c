"""Bit-packed prompt export: exact round trip, sizes, loading without SpikingJelly, clear errors."""
import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from conftest import tiny_cfg
from nvpt.config import dump_config
from nvpt.engine.checkpoint import model_identity, save_checkpoint
from nvpt.engine.loop import Normalize, evaluate
from nvpt.engine.restore import load_run
from nvpt.engine.run import DistInfo, make_loader, prepare_data
from nvpt.pipeline import run_training
from nvpt.errors import NVPTError
from nvpt.export import DEFAULT_NAME, export_packed, factor_tokens, load_packed, read_packed, unpack_tokens
from nvpt.models import build_model

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
IMAGES = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(5))


def make_run(folder: Path, *overrides: str, deploy: bool = False):
    """A run folder as tools/train.py leaves it (config.yaml + best checkpoint), without training:
    seeded like run_training, then prompts and head moved off their init so every part matters."""
    cfg = tiny_cfg(*overrides)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg)
    gen = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.requires_grad:  # prompt current, scale (negative entries too), head
                p.copy_(torch.rand(p.shape, generator=gen) * 2 - 0.5)
    if deploy:
        model.deploy()
    folder.mkdir(parents=True)
    dump_config(cfg, folder / "config.yaml")
    save_checkpoint(folder / "checkpoint-best.safetensors", model, model_identity(model, cfg), epoch=0)
    return cfg, model.eval().deploy()


def outputs(model) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(IMAGES)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A real (1-epoch) spike_nvpt run on the offline textures; the backbone is random (pretrained=false)."""
    out = tmp_path_factory.mktemp("runs")
    cfg = tiny_cfg("prompt.method=spike_nvpt", "data.name=textures", "data.train_per_class=4", "data.test_per_class=4",
                   "data.val_fraction=0.25", "data.crop_size=32", "data.num_workers=0", "train.epochs=1",
                   "train.warmup_epochs=0", "eval.gaussian_std=[0.1]", f"output_dir={out}", "model.num_classes=null", "seed=7")
    result = run_training(cfg, log=lambda m: None, show_progress=False)
    info = export_packed(result.run_dir)
    return cfg, result, info


def test_trained_run_round_trip_is_exact(trained):
    cfg, result, info = trained
    assert info.path == result.run_dir / DEFAULT_NAME and info.path.is_file()
    packed = load_packed(info.path)
    assert packed.deployed and type(packed.prompts).__name__ == "StaticPrompts"
    # the reference: the run's own checkpoint through SpikePrompts (SFL + SDU), then deployed
    reference = load_run(result.run_dir).model.deploy()  # load_run seeds like training
    assert torch.equal(packed.prompts.tokens, reference.prompts.tokens)
    assert (outputs(packed) - outputs(reference)).abs().max().item() == 0.0
    # end to end: the packed model scores exactly the clean test accuracy that run_training reported
    bundle, _ = prepare_data(cfg)
    loader = make_loader(bundle.test, 64, cfg, DistInfo(), train=False, device=torch.device("cpu"))
    clean = evaluate(packed, loader, Normalize(bundle.mean, bundle.std), torch.device("cpu"))
    assert clean["acc"] == pytest.approx(result.summary["clean"], abs=1e-9)


def test_sizes_are_one_bit_per_element_plus_scale(trained):
    _, result, info = trained
    _, meta, cfg = read_packed(info.path)
    layers, length, dim = meta["prompt_shape"]
    assert (layers, length, dim) == (3, 4, 48)
    sizes = meta["sizes"]
    assert sizes == info.sizes
    assert sizes["file_bytes"] == info.path.stat().st_size
    assert sizes["bits_bytes"] == math.ceil(layers * length * dim / 8)
    assert sizes["scale_bytes"] == layers * dim * 4  # per-channel scale [L, 1, D] float32
    assert sizes["fp32_vpt_prompt_bytes"] == layers * length * dim * 4
    assert sizes["prompt_payload_bytes"] == sizes["bits_bytes"] + sizes["scale_bytes"]
    assert sizes["bits_bytes"] * 32 == sizes["fp32_vpt_prompt_bytes"]
    assert sizes["payload_vs_fp32"] == pytest.approx(1 / 32 + 1 / length, abs=1e-6)
    assert meta["mapping"] == "tokens = scale * bits" and cfg.prompt.method == "spike_nvpt"
    # the same storage figure in the export and in the run's results.json (nvpt.models.binary_prompts.prompt_bits)
    assert sizes["shift_bytes"] == 0 and sizes["prompt_bits"] == layers * length * dim + 32 * layers * dim
    assert json.loads((result.run_dir / "results.json").read_text())["prompt_bits"] == sizes["prompt_bits"]


def test_loads_without_spikingjelly_or_cupy(trained, tmp_path):
    _, result, info = trained
    packed = load_packed(info.path)
    save_file({"images": IMAGES, "logits": outputs(packed)}, str(tmp_path / "ref.safetensors"))
    script = textwrap.dedent(f"""
        import sys
        sys.modules["spikingjelly"] = None  # any import of it raises ImportError
        sys.modules["cupy"] = None
        sys.path.insert(0, {str(ROOT)!r})
        import torch
        torch.set_num_threads(1)
        from safetensors.torch import load_file
        from nvpt.export import load_packed
        ref = load_file({str(tmp_path / "ref.safetensors")!r})
        model = load_packed({str(info.path)!r})
        with torch.no_grad():
            diff = (model(ref["images"]) - ref["logits"]).abs().max().item()
        loaded = sorted(m for m in sys.modules if m.startswith(("spikingjelly", "cupy")) and sys.modules[m] is not None)
        print("max_abs_diff", diff, "spiking_modules", loaded)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env=ENV)
    assert proc.returncode == 0, proc.stderr
    assert "max_abs_diff 0.0 spiking_modules []" in proc.stdout


@pytest.mark.parametrize("overrides,deploy", [
    (("spike.center=true",), False),
    (("spike.scale=layer",), False),
    (("spike.scale=none", "spike.center=true"), False),
    (("spike.discretize=last", "spike.time_steps=3", "prompt.deep=false"), False),
    (("spike.center=true",), True),  # an already deployed checkpoint: the scale is recovered from the tokens
    (("spike.scale=layer",), True),
])
def test_variants_round_trip_exactly(tmp_path, overrides, deploy):
    cfg, reference = make_run(tmp_path / "run", "prompt.method=spike_nvpt", *overrides, deploy=deploy)
    info = export_packed(tmp_path / "run", tmp_path / "out.safetensors")
    tensors, meta, _ = read_packed(info.path)
    binary = np.unpackbits(tensors["prompts/bits"].numpy(), count=math.prod(meta["prompt_shape"]))
    assert 0 < binary.mean() < 1  # a real mix of 0s and 1s was packed
    scale = tensors.get("prompts/scale")
    assert (scale is None) == (cfg.spike.scale == "none")
    packed = load_packed(info.path)
    assert torch.equal(packed.prompts.tokens, reference.prompts.tokens)
    assert (outputs(packed) - outputs(reference)).abs().max().item() == 0.0


def test_explicit_backbone_weights_and_backbone_check(tmp_path):
    _, reference = make_run(tmp_path / "run", "prompt.method=spike_nvpt", "seed=3")
    info = export_packed(tmp_path / "run")
    head = {f"head.{n}" for n, _ in reference.backbone.get_classifier().named_parameters()}
    weights = {k: v for k, v in reference.backbone.state_dict().items() if k not in head}
    save_file(weights, str(tmp_path / "backbone.safetensors"))
    packed = load_packed(info.path, backbone_weights=tmp_path / "backbone.safetensors")
    assert torch.equal(outputs(packed), outputs(reference))
    other = {k: v + 0.01 if k.endswith("weight") else v for k, v in weights.items()}
    save_file(other, str(tmp_path / "other.safetensors"))
    with pytest.raises(NVPTError, match="differs from the one its prompts were exported with"):
        load_packed(info.path, backbone_weights=tmp_path / "other.safetensors")
    mixed = load_packed(info.path, backbone_weights=tmp_path / "other.safetensors", check_backbone=False)
    assert torch.equal(mixed.prompts.tokens, reference.prompts.tokens)


def test_non_spike_runs_are_refused(tmp_path):
    make_run(tmp_path / "vpt", "prompt.method=vpt_deep")
    with pytest.raises(NVPTError, match="only spike_nvpt runs can be bit-packed; .* vpt_deep run"):
        export_packed(tmp_path / "vpt")
    proc = subprocess.run([sys.executable, str(ROOT / "tools/export_prompts.py"), str(tmp_path / "vpt")],
                          capture_output=True, text=True, timeout=120, env=ENV)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and proc.stderr.startswith("error: only spike_nvpt runs")


def test_tokens_that_are_not_binary_are_refused():
    tokens = torch.tensor([[[0.5, 0.0], [0.5, 0.25]]])  # [L=1, P=2, D=2]; channel 1 holds 0 and 0.25: fine
    bits, scale, shift = factor_tokens(tokens, None, "channel", center=False)
    assert shift is None
    assert torch.equal(unpack_tokens(bits, tokens.shape, scale, False), tokens)
    bad = torch.tensor([[[0.5, 0.0], [0.4, 0.25]]])  # channel 0 holds 0.5 and 0.4: two non-zero values
    with pytest.raises(NVPTError, match="not exactly scale \\* b with binary b \\(1 of 4"):
        factor_tokens(bad, None, "channel", center=False)
    with pytest.raises(NVPTError, match="not exactly scale \\* \\(2b - 1\\)"):
        factor_tokens(tokens, torch.tensor([[[0.5, 0.25]]]), "channel", center=True)  # 0 is not +-scale


def test_corrupted_and_foreign_files_are_refused(tmp_path):
    make_run(tmp_path / "run", "prompt.method=spike_nvpt")
    info = export_packed(tmp_path / "run")
    blob = info.path.read_bytes()
    (tmp_path / "truncated.safetensors").write_bytes(blob[: len(blob) - 100])
    with pytest.raises(NVPTError, match="cannot read packed prompts .*truncated"):
        read_packed(tmp_path / "truncated.safetensors")
    flipped = bytearray(blob)
    flipped[-60] ^= 0x10  # a bit inside the tensor data
    (tmp_path / "flipped.safetensors").write_bytes(bytes(flipped))
    with pytest.raises(NVPTError, match="corrupted: the tensors do not match their sha256"):
        load_packed(tmp_path / "flipped.safetensors")
    with pytest.raises(NVPTError, match="not a packed Spike-NVPT prompt file"):
        load_packed(tmp_path / "run" / "checkpoint-best.safetensors")
    with pytest.raises(NVPTError, match="packed prompts file not found"):
        load_packed(tmp_path / "missing.safetensors")


def test_cli_prints_and_stores_the_sizes(tmp_path):
    make_run(tmp_path / "run", "prompt.method=spike_nvpt")
    out = tmp_path / "packed.safetensors"
    proc = subprocess.run([sys.executable, str(ROOT / "tools/export_prompts.py"), str(tmp_path / "run"), "--out", str(out)],
                          capture_output=True, text=True, timeout=120, env=ENV)
    assert proc.returncode == 0, proc.stderr
    _, meta, _ = read_packed(out)
    sizes = meta["sizes"]
    assert f"file {sizes['file_bytes']:,} bytes" in proc.stdout
    assert f"prompt payload {sizes['prompt_payload_bytes']:,} bytes" in proc.stdout
    assert f"vs {sizes['fp32_vpt_prompt_bytes']:,} bytes of fp32 VPT prompts [3x4x48]" in proc.stdout
    assert json.loads(json.dumps(sizes)) == sizes
