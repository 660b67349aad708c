"""The prompted ViT against a step-by-step reference over timm's own modules."""
import math
import subprocess
import sys
import textwrap

import pytest
import timm
import torch

from conftest import tiny_cfg
from nvpt.errors import NVPTError
from nvpt.models import build_model

# Backbone variants: class token + token pooling; registers + avg pooling; no class token + avg.
VARIANTS = {
    "cls_token": "model.kwargs={patch_size: 8, depth: 3, embed_dim: 48, num_heads: 3}",
    "registers_avg": "model.kwargs={patch_size: 8, depth: 3, embed_dim: 48, num_heads: 3, reg_tokens: 2, global_pool: avg}",
    "no_cls_avg": "model.kwargs={patch_size: 8, depth: 3, embed_dim: 48, num_heads: 3, class_token: false, global_pool: avg, no_embed_class: true}",
}
PROMPT_METHODS = ["vpt_shallow", "vpt_deep", "spike_nvpt", "linear", "full"]


def reference_forward(model, images, tokens):
    """VPT by hand over the backbone's modules: insert, replace per layer, drop before the norm."""
    bb = model.backbone
    n = bb.num_prefix_tokens
    layers, length = tokens.shape[0], tokens.shape[1]
    x = bb.norm_pre(bb.patch_drop(bb._pos_embed(bb.patch_embed(images))))
    batch = x.shape[0]
    for i, block in enumerate(bb.blocks):
        if length and i == 0:
            x = torch.cat([x[:, :n], tokens[0].expand(batch, -1, -1), x[:, n:]], dim=1)
        elif length and i < layers:
            x = torch.cat([x[:, :n], tokens[i].expand(batch, -1, -1), x[:, n + length:]], dim=1)
        x = block(x)  # the model's hooks are inactive outside its own forward
    if length:
        x = torch.cat([x[:, :n], x[:, n + length:]], dim=1)
    return bb.forward_head(bb.norm(x))


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("method", PROMPT_METHODS)
def test_matches_reference_loop(method, variant):
    torch.manual_seed(0)
    model = build_model(tiny_cfg(f"prompt.method={method}", VARIANTS[variant], "prompt.deep=true")).eval()
    images = torch.randn(3, 3, 32, 32)
    tokens = model.prompt_tokens()
    with torch.no_grad():
        out = model(images)
        ref = reference_forward(model, images, tokens)
    assert out.shape == (3, 5)
    assert torch.equal(out, ref), (out - ref).abs().max()  # the same operations: bit-identical
    if method in ("vpt_shallow", "vpt_deep", "spike_nvpt"):  # the prompts change the output
        plain = model.backbone(images)
        assert (out - plain).abs().max() > 1e-4


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("method", ["vpt_shallow", "vpt_deep", "spike_nvpt"])
def test_prompts_sit_right_after_the_prefix_tokens(method, variant):
    """The exact slots, seen by pre-hooks on every block: [class + register tokens, layer-i prompts, patches].

    The blocks treat token order alike (no position embedding inside them), so only the inputs they
    receive show where the prompts sit; the remove hook must drop exactly those slots again."""
    torch.manual_seed(0)
    model = build_model(tiny_cfg(f"prompt.method={method}", VARIANTS[variant])).eval()
    bb = model.backbone
    n, length, patches = model.num_prefix_tokens, 4, bb.patch_embed.num_patches
    assert n == {"cls_token": 1, "registers_avg": 3, "no_cls_avg": 0}[variant]  # registers count as prefix
    tokens = model.prompt_tokens()  # [L, P, D]: L = 1 when shallow, depth when deep
    assert tokens.shape[:2] == ((1 if method == "vpt_shallow" else 3), length)
    images = torch.randn(2, 3, 32, 32)
    inputs, outputs = [], []
    handles = [b.register_forward_pre_hook(lambda m, a: inputs.append(a[0])) for b in bb.blocks]  # after the model's
    handles += [b.register_forward_hook(lambda m, a, o: outputs.append(o)) for b in bb.blocks[:-1]]
    with torch.no_grad():
        features = model.forward_features(images)
        for h in handles:
            h.remove()
        embedded = bb.norm_pre(bb.patch_drop(bb._pos_embed(bb.patch_embed(images))))  # [B, n + N, D]
        last = bb.blocks[-1](inputs[-1])  # the last block's raw output, prompts still in it
    assert len(inputs) == len(bb.blocks)
    for i, x in enumerate(inputs):
        before = embedded if i == 0 else outputs[i - 1]
        skip = 0 if i == 0 else length  # block 0 receives the prompts; later blocks carry them in
        assert x.shape == (2, n + length + patches, 48), f"block {i}: {tuple(x.shape)}"
        assert torch.equal(x[:, :n], before[:, :n]), f"block {i}: class/register tokens are not first"
        assert torch.equal(x[:, n + length:], before[:, n + skip:]), f"block {i}: patch tokens are not last, in order"
        prompts = tokens[i].expand(2, -1, -1) if i < tokens.shape[0] else before[:, n:n + length]  # deep: replaced
        assert torch.equal(x[:, n:n + length], prompts), f"block {i}: layer {i}'s prompts are not right after the prefix"
    assert torch.equal(features, bb.norm(torch.cat([last[:, :n], last[:, n + length:]], dim=1)))


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_prompt_length_zero_is_the_plain_timm_model(variant):
    model = build_model(tiny_cfg("prompt.method=vpt_deep", "prompt.length=0", VARIANTS[variant])).eval()
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(images), model.backbone(images))


def test_shapes_and_vpt_init_bounds():
    cfg = tiny_cfg("prompt.method=vpt_deep", "prompt.length=6")
    model = build_model(cfg)
    assert model.prompts.tokens.shape == (3, 6, 48)  # [L=depth, P, D]
    bound = math.sqrt(6.0 / (3 * 8 * 8 + 48))
    tokens = model.prompts.tokens
    assert tokens.abs().max() <= bound and tokens.abs().max() > 0.8 * bound
    shallow = build_model(tiny_cfg("prompt.method=vpt_shallow", "prompt.length=6"))
    assert shallow.prompts.tokens.shape == (1, 6, 48)
    spike_shallow = build_model(tiny_cfg("prompt.method=spike_nvpt", "prompt.deep=false"))
    assert spike_shallow.prompt_tokens().shape == (1, 4, 48)
    spike = build_model(tiny_cfg("prompt.method=spike_nvpt", "spike.scale=layer"))
    assert spike.prompts.current.shape == (3, 4, 48) and spike.prompts.scale.shape == (3, 1, 1)
    assert torch.allclose(spike.prompts.scale, torch.tensor(bound))


@pytest.mark.parametrize("method,expected", [
    ("linear", {"backbone.head.weight", "backbone.head.bias"}),
    ("vpt_shallow", {"backbone.head.weight", "backbone.head.bias", "prompts.tokens"}),
    ("vpt_deep", {"backbone.head.weight", "backbone.head.bias", "prompts.tokens"}),
    ("spike_nvpt", {"backbone.head.weight", "backbone.head.bias", "prompts.current", "prompts.scale"}),
])
def test_only_prompts_and_head_train(method, expected):
    model = build_model(tiny_cfg(f"prompt.method={method}", "prompt.dropout=0.2"))
    assert {n for n, p in model.named_parameters() if p.requires_grad} == expected
    frozen = {n: p.detach().clone() for n, p in model.backbone.named_parameters() if not p.requires_grad}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5, momentum=0.9, weight_decay=0.1)
    model.train()
    for _ in range(3):
        assert not model.backbone.training and model.training
        loss = torch.nn.functional.cross_entropy(model(torch.randn(4, 3, 32, 32)), torch.tensor([0, 1, 2, 3]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    for name, param in model.backbone.named_parameters():
        if name in frozen:
            assert torch.equal(param, frozen[name]), name


def test_full_trains_everything_in_train_mode():
    model = build_model(tiny_cfg("prompt.method=full")).train()
    assert all(p.requires_grad for p in model.parameters())
    assert model.backbone.training


def test_prompt_dropout_masks_differ_per_sample():
    model = build_model(tiny_cfg("prompt.method=vpt_shallow", "prompt.dropout=0.5", "prompt.length=8")).train()
    seen = {}

    def capture(module, args):
        seen["x"] = args[0].detach()

    handle = model.backbone.blocks[0].register_forward_pre_hook(capture)  # runs after the insert hook
    image = torch.randn(1, 3, 32, 32).expand(4, -1, -1, -1)
    model(image)
    handle.remove()
    n = model.num_prefix_tokens
    prompts = seen["x"][:, n:n + 8]  # [B, P, D] after dropout
    kept = prompts != 0
    assert not torch.equal(kept[0], kept[1]) and not torch.equal(kept[0], kept[2])
    assert 0.3 < kept.float().mean() < 0.7
    scaled = prompts[kept] / model.prompts.tokens[0].expand(4, -1, -1)[kept]
    torch.testing.assert_close(scaled, torch.full_like(scaled, 2.0))  # inverted dropout: 1 / (1 - p)


def test_spike_eval_prompts_are_binary_times_scale_and_noise_free():
    model = build_model(tiny_cfg("prompt.method=spike_nvpt", "spike.noise_std=0.5")).eval()
    tokens = model.prompt_tokens()
    binary = tokens / model.prompts.scale
    assert set(binary.round().unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(binary, binary.round())  # exactly scale * b
    assert 0.1 < binary.mean() < 0.9  # the init makes a useful fraction fire
    assert torch.equal(tokens, model.prompt_tokens())  # no noise in eval: identical every call
    model.train()
    first, second = model.prompts(), model.prompts()
    assert not torch.equal(first, second)  # fresh noise every training step


def test_spike_center_maps_to_plus_minus_one():
    model = build_model(tiny_cfg("prompt.method=spike_nvpt", "spike.center=true", "spike.scale=none"))
    assert set(model.prompt_tokens().unique().tolist()) <= {-1.0, 1.0}


@pytest.mark.parametrize("rule", ["rate", "last"])
@pytest.mark.parametrize("filt", ["if", "none"])
def test_gradients_reach_latent_current_through_surrogate(rule, filt):
    """The task loss alone reaches U: through the tokens, the SDU and the spikes' surrogate gradient.

    No firing-rate penalty: that term reaches U without passing through the SDU or the tokens."""
    torch.manual_seed(0)
    model = build_model(tiny_cfg("prompt.method=spike_nvpt", f"spike.discretize={rule}", f"spike.filter={filt}")).train()
    assert model.aux_loss() is None  # no target rate: nothing but the task loss can reach U
    loss = torch.nn.functional.cross_entropy(model(torch.randn(4, 3, 32, 32)), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    grad = model.prompts.current.grad
    assert grad is not None and torch.isfinite(grad).all()
    assert (grad != 0).float().mean() > 0.5  # the surrogate reaches (nearly) every element, not a few
    assert model.prompts.scale.grad.abs().sum() > 0


def test_sfl_runs_once_per_forward_not_per_image():
    model = build_model(tiny_cfg("prompt.method=spike_nvpt")).train()
    calls = []
    model.prompts.filter.register_forward_hook(lambda m, a, o: calls.append(a[0].shape))
    model(torch.randn(7, 3, 32, 32))
    assert calls == [torch.Size([model.prompts.time_steps, 3, 4, 48])]  # [T, L, P, D], whatever the batch


def test_deploy_keeps_outputs_and_drops_spikingjelly():
    model = build_model(tiny_cfg("prompt.method=spike_nvpt")).eval()
    images = torch.randn(3, 3, 32, 32)
    tokens = model.prompt_tokens()
    with torch.no_grad():
        before = model(images)
        model.deploy()
        after = model(images)
    assert torch.equal(model.prompts.tokens, tokens)  # deploy freezes the eval tokens as they are
    assert torch.equal(after, before), (after - before).abs().max()  # identical, not merely close
    assert type(model.prompts).__name__ == "StaticPrompts"
    assert not any(p.requires_grad for p in model.prompts.parameters())


def test_deployed_model_runs_without_spikingjelly(tmp_path):
    model = build_model(tiny_cfg("prompt.method=spike_nvpt")).eval()
    model.deploy()
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(images)
    torch.save({"state": model.state_dict(), "images": images, "expected": expected}, tmp_path / "deployed.pt")
    script = textwrap.dedent(f"""
        import sys
        sys.modules["spikingjelly"] = None  # any import of spikingjelly now raises ImportError
        sys.path.insert(0, {str(__import__('pathlib').Path(__file__).parent)!r})
        import torch
        from conftest import tiny_cfg
        from nvpt.models import build_model
        saved = torch.load({str(tmp_path / 'deployed.pt')!r}, weights_only=True)
        model = build_model(tiny_cfg("prompt.method=spike_nvpt"), deployed=True).eval()
        model.load_state_dict(saved["state"])
        with torch.no_grad():
            out = model(saved["images"])
        assert torch.equal(out, saved["expected"]), (out - saved["expected"]).abs().max()
        assert not any(name.startswith("spikingjelly") for name, mod in sys.modules.items() if mod is not None)
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("ok")


def test_build_errors_are_clear():
    with pytest.raises(NVPTError, match="unknown timm model 'vit_tiny_patch16_2240'.*did you mean"):
        build_model(tiny_cfg("model.name=vit_tiny_patch16_2240"))
    with pytest.raises(NVPTError, match="not a timm VisionTransformer"):
        build_model(tiny_cfg("model.name=resnet18", "model.kwargs=null", "model.img_size=null"))
    with pytest.raises(NVPTError, match="model.num_classes"):
        build_model(tiny_cfg("model.num_classes=null"))


def test_pretrained_file_roundtrip_and_mismatch(tmp_path):
    from safetensors.torch import save_file

    source = build_model(tiny_cfg("prompt.method=full", "model.num_classes=7"))
    weights = {k: v.contiguous() for k, v in source.backbone.state_dict().items()}
    save_file(weights, str(tmp_path / "backbone.safetensors"))
    torch.save(weights, tmp_path / "backbone.pth")
    for name in ("backbone.safetensors", "backbone.pth"):
        loaded = build_model(tiny_cfg(f"model.pretrained_file={tmp_path / name}"))  # 5 classes: head re-initialised
        for key, value in weights.items():
            if not key.startswith("head."):
                assert torch.equal(loaded.backbone.state_dict()[key], value), key
    wrong = dict(weights)
    wrong.pop("blocks.0.attn.qkv.weight")
    wrong["blocks.0.extra"] = torch.zeros(1)
    save_file(wrong, str(tmp_path / "wrong.safetensors"))
    with pytest.raises(NVPTError, match=r"does not fit.*missing: blocks\.0\.attn\.qkv\.weight.*unexpected: blocks\.0\.extra"):
        build_model(tiny_cfg(f"model.pretrained_file={tmp_path / 'wrong.safetensors'}"))
    with pytest.raises(NVPTError, match="weights file not found"):
        build_model(tiny_cfg(f"model.pretrained_file={tmp_path / 'nope.safetensors'}"))


def test_hub_weights_offline_say_how_to_pass_a_file(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(NVPTError, match="model.pretrained_file="):
        build_model(tiny_cfg("model.pretrained=true", "model.name=vit_tiny_patch16_224.augreg_in21k", "model.kwargs=null",
                             "model.img_size=null"))
