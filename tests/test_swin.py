"""Prompts on timm's Swin Transformer (nvpt.models.prompted_swin) against a written-out VPT-Swin forward."""
import copy
import math

import pytest
import torch
import torch.nn.functional as F

from conftest import tiny_cfg
from nvpt.errors import NVPTError
from nvpt.models import build_model
from nvpt.models.prompted_swin import PromptedSwin

# 32 px, patch 2: stage 0 is a 16x16 grid in 16 windows of 4x4 (C = 48), stage 1 an 8x8 grid in 4 windows
# (C = 96); the second block of each stage shifts its windows by 2 (the masked, shifted attention).
SWIN = ["model.name=swin_tiny_patch4_window7_224",
        "model.kwargs={patch_size: 2, window_size: 4, embed_dim: 48, depths: [2, 2], num_heads: [3, 6]}"]
PROMPTED = ["vpt_shallow", "vpt_deep", "spike_nvpt"]
IMAGES = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(3))


def swin(*overrides):
    torch.manual_seed(0)
    return build_model(tiny_cfg(*SWIN, *overrides)).eval()


# -- the VPT reference's formulation, written out: one image, one window at a time ---------------------
def layer_norm(x, norm):
    return F.layer_norm(x, (x.shape[-1],), norm.weight, norm.bias, norm.eps)


def mlp(x, block):
    hidden = F.gelu(x @ block.mlp.fc1.weight.T + block.mlp.fc1.bias)
    return hidden @ block.mlp.fc2.weight.T + block.mlp.fc2.bias


def regions(size, window, shift):
    """Swin's shifted-window regions along one axis of the rolled map: 0 | 1 | 2."""
    return [0 if i < size - window else 1 if i < size - shift else 2 for i in range(size)]


def window_attention(tokens, prompts, coords, labels, attn):
    """[P prompts, N window tokens] -> outputs; position bias and shift mask only between window tokens."""
    heads, ws = attn.num_heads, attn.window_size[0]
    seq = torch.cat([prompts, tokens])  # [P + N, C]
    P, total = prompts.shape[0], seq.shape[0]
    q, k, v = (seq @ attn.qkv.weight.T + attn.qkv.bias).reshape(total, 3, heads, -1).permute(1, 2, 0, 3)
    scores = (q * attn.scale) @ k.transpose(-2, -1)  # [heads, P + N, P + N]
    extra = torch.zeros(heads, total, total)
    for i, (yi, xi) in enumerate(coords):
        for j, (yj, xj) in enumerate(coords):
            row = (yi - yj + ws - 1) * (2 * ws - 1) + (xi - xj + ws - 1)  # relative position (dy, dx)
            extra[:, P + i, P + j] = attn.relative_position_bias_table[row]
            if labels[i] != labels[j]:
                extra[:, P + i, P + j] -= 100.0  # tokens of different regions of a shifted window
    out = (scores + extra).softmax(-1) @ v  # [heads, P + N, hd]
    out = out.permute(1, 0, 2).reshape(total, -1)
    return out @ attn.proj.weight.T + attn.proj.bias


def reference_block(x, p, block):
    """x [H, W, C], p [P, C] of one image -> both after the prompted block."""
    H, W, C = x.shape
    ws, shift = block.window_size[0], block.shift_size[0]
    xn, pn = layer_norm(x, block.norm1), layer_norm(p, block.norm1)
    rolled = torch.roll(xn, (-shift, -shift), (0, 1))
    label_h, label_w = regions(H, ws, shift), regions(W, ws, shift)
    attended = torch.zeros_like(rolled)
    prompt_outs = []
    for top in range(0, H, ws):
        for left in range(0, W, ws):
            cells = [(top + dy, left + dx) for dy in range(ws) for dx in range(ws)]
            tokens = torch.stack([rolled[h, w] for h, w in cells])
            labels = [3 * label_h[h] + label_w[w] for h, w in cells] if shift else [0] * len(cells)
            out = window_attention(tokens, pn, [(h - top, w - left) for h, w in cells], labels, block.attn)
            prompt_outs.append(out[:len(p)])
            for (h, w), value in zip(cells, out[len(p):]):
                attended[h, w] = value
    x = x + torch.roll(attended, (shift, shift), (0, 1))
    p = p + torch.stack(prompt_outs).mean(0)  # the prompt outputs of every window of the image, averaged
    return x + mlp(layer_norm(x, block.norm2), block), p + mlp(layer_norm(p, block.norm2), block)


def reference_merge(x, p, merge):
    x = torch.cat([x[0::2, 0::2], x[1::2, 0::2], x[0::2, 1::2], x[1::2, 1::2]], dim=-1)
    p = torch.cat([p, p, p, p], dim=-1)
    return (layer_norm(x, merge.norm) @ merge.reduction.weight.T,
            layer_norm(p, merge.norm) @ merge.reduction.weight.T)


def reference_forward(model, images, block_prompts):
    """Logits of the VPT-Swin formulation: block_prompts[i] [P, D_i] enter block i (deep), or only
    block 0 (shallow: one entry) and are carried on; the head pools the P prompt and H*W token outputs."""
    bb = model.backbone
    logits = []
    for image in images:
        x = bb.patch_embed(image[None])[0]  # [H, W, C]
        p, index = None, 0
        for s, stage in enumerate(bb.layers):
            if s > 0:
                x, p = reference_merge(x, p, stage.downsample)
            for block in stage.blocks:
                if index < len(block_prompts):
                    p = block_prompts[index]
                x, p = reference_block(x, p, block)
                index += 1
        tokens = layer_norm(torch.cat([p, x.reshape(-1, x.shape[-1])]), bb.norm)  # [P + H*W, C]
        logits.append(bb.head.fc(tokens.mean(0)))
    return torch.stack(logits)


def assert_matches(out, ref):
    """float32 agreement: the same sums in another order (batched windows vs one window at a time)."""
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=2e-6)


@pytest.mark.parametrize("method", PROMPTED)
def test_matches_the_written_out_formulation(method):
    model = swin(f"prompt.method={method}", "prompt.deep=true")
    blocks = model.block_prompts()
    assert [tuple(b.shape) for b in blocks] == ([(4, 48)] if method == "vpt_shallow" else [(4, 48), (4, 48), (4, 96), (4, 96)])
    with torch.no_grad():
        out = model(IMAGES)
        ref = reference_forward(model, IMAGES, blocks)
        plain = model.backbone(IMAGES)
    assert_matches(out, ref)
    assert (out - plain).abs().max() > 1e-3  # the prompts change the output


def test_fused_attention_path_too():
    model = swin("prompt.method=vpt_deep")
    for stage in model.backbone.layers:
        for block in stage.blocks:
            block.attn.fused_attn = True  # timm's scaled_dot_product_attention path (the default on GPUs with TIMM_FUSED_ATTN)
    with torch.no_grad():
        assert_matches(model(IMAGES), reference_forward(model, IMAGES, model.block_prompts()))


def test_reference_codes_window_order_is_caught(monkeypatch):
    """The VPT code tiles an image's prompts window-major over the batch (expand(nW, B) then reshape), which pairs
    windows with other images' prompts once prompts differ per image (shallow, after block 0). That placement
    must fail the comparison above."""
    model = swin("prompt.method=vpt_shallow")

    def tiled(attn, args):
        windows, normed = args[0], model._active["normed"]
        prompts = normed.unsqueeze(0).expand(windows.shape[0] // normed.shape[0], -1, -1, -1).reshape(-1, *normed.shape[1:])
        return (torch.cat([prompts, windows], dim=1),)

    monkeypatch.setattr(model, "_attn_pre_hook", tiled)
    for stage in model.backbone.layers:  # re-install the hooks with the wrong placement
        for block in stage.blocks:
            block.attn._forward_pre_hooks.clear()
            block.attn.register_forward_pre_hook(model._attn_pre_hook)
    with torch.no_grad():
        out = model(IMAGES)
        ref = reference_forward(model, IMAGES, model.block_prompts())
    with pytest.raises(AssertionError, match="not close"):
        assert_matches(out, ref)


@pytest.mark.parametrize("method", PROMPTED)
def test_prompts_reach_every_window_of_their_own_image(method):
    """Inside each block's attention: B * nW windows (16 in stage 0, 4 in stage 1) of P + 16 tokens, the first P
    of window b*nW + w being image b's normed prompts; dropout makes them differ per image."""
    model = swin(f"prompt.method={method}", "prompt.dropout=0.5").train()
    seen = []
    for stage in model.backbone.layers:
        for block in stage.blocks:
            block.attn.register_forward_pre_hook(lambda m, a: seen.append((a[0], model._active["normed"])))
    model(IMAGES)
    assert len(seen) == 4
    for i, (windows, normed) in enumerate(seen):
        per_image = 16 if i < 2 else 4
        width = 48 if i < 2 else 96
        assert windows.shape == (3 * per_image, 4 + 16, width), f"block {i}: {tuple(windows.shape)}"
        assert not torch.equal(normed[0], normed[1])  # per-image prompts
        for b in range(3):
            for w in range(per_image):
                assert torch.equal(windows[b * per_image + w, :4], normed[b]), f"block {i}, image {b}, window {w}"


def test_shift_mask_and_position_bias_get_zero_prompt_rows():
    """The attention's bias + mask: timm's inside, zeros at the P prompt rows and columns."""
    model = swin("prompt.method=vpt_deep")
    block = model.backbone.layers[0].blocks[1]  # shifted
    attn = block.attn
    assert block.shift_size == (2, 2) and block.attn_mask.shape == (16, 16, 16)
    captured = {}
    original = attn._get_rel_pos_bias
    attn._get_rel_pos_bias = lambda: captured.setdefault("bias", original())
    x = torch.randn(2 * 16, 4 + 16, 48)
    with torch.no_grad():
        attn(x, mask=block.attn_mask)
    bias = captured["bias"]
    assert bias.shape == (1, 3, 20, 20)
    assert torch.equal(bias[..., :4, :], torch.zeros(1, 3, 4, 20)) and torch.equal(bias[..., :, :4], torch.zeros(1, 3, 20, 4))
    del attn._get_rel_pos_bias
    with torch.no_grad():
        assert torch.equal(bias[..., 4:, 4:], attn._get_rel_pos_bias())  # the timm bias, unprompted call
        # a mask of 16 regions per window: the window in the corner mixes 4 regions, a plain window 1
        assert (block.attn_mask[-1] != 0).any() and not (block.attn_mask[0] != 0).any()


@pytest.mark.parametrize("method", ["linear", "full"])
def test_linear_and_full_are_timm_swin(method):
    model = swin(f"prompt.method={method}")
    assert isinstance(model, PromptedSwin) and model.prompts is None
    with torch.no_grad():
        assert torch.equal(model(IMAGES), model.backbone(IMAGES))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == ({"backbone.head.fc.weight", "backbone.head.fc.bias"} if method == "linear"
                         else {n for n, _ in model.named_parameters()})


def test_prompt_length_zero_is_the_plain_timm_model():
    model = swin("prompt.method=vpt_deep", "prompt.length=0")
    with torch.no_grad():
        assert torch.equal(model(IMAGES), model.backbone(IMAGES))


def test_prompt_tensor_layout_and_training():
    """[R, P, G]: G = 48; stage 0 blocks own 1 row, stage 1 blocks 2; only prompts and head train."""
    model = swin("prompt.method=spike_nvpt").train()
    assert tuple(model.prompts.current.shape) == (1 + 1 + 2 + 2, 4, 48)
    assert tuple(model.prompts.scale.shape) == (6, 1, 48)  # per channel of every block
    assert tuple(swin("prompt.method=spike_nvpt", "prompt.deep=false").prompts.current.shape) == (1, 4, 48)
    tokens = model.prompt_tokens()
    blocks = model.block_prompts(tokens)
    assert torch.equal(blocks[2], torch.cat([tokens[2], tokens[3]], dim=-1))  # block 2's channels: rows 2 then 3
    bound = math.sqrt(6.0 / (3 * 2 * 2 + 48))
    assert torch.allclose(model.prompts.scale, torch.tensor(bound))  # VPT's init bound, stage 0's width
    loss = F.cross_entropy(model(IMAGES), torch.tensor([0, 1, 2]))
    loss.backward()
    assert (model.prompts.current.grad != 0).float().mean() > 0.5  # every stage's prompts get gradients
    assert all(p.grad is None for n, p in model.backbone.named_parameters() if not n.startswith("head."))


def test_deploy_is_exact():
    model = swin("prompt.method=spike_nvpt")
    with torch.no_grad():
        before = model(IMAGES)
        tokens = model.prompt_tokens()
        binary = tokens / model.prompts.scale
        model.deploy()
        after = model(IMAGES)
    assert torch.equal(binary, binary.round()) and set(binary.unique().tolist()) == {0.0, 1.0}  # scale * b
    assert type(model.prompts).__name__ == "StaticPrompts" and torch.equal(model.prompts.tokens, tokens)
    assert torch.equal(after, before)  # identical, not merely close
    with torch.no_grad():
        assert torch.equal(copy.deepcopy(model)(IMAGES), after)  # the copy's hooks serve the copy's prompts


def test_unsupported_families_are_refused_in_one_line():
    for name in ("resnet18", "swinv2_tiny_window8_256"):
        with pytest.raises(NVPTError, match=r"not a timm VisionTransformer or SwinTransformer; pick a vit_\* .* or swin_\* model"):
            build_model(tiny_cfg(f"model.name={name}", "model.kwargs=null", "model.img_size=null"))
    with pytest.raises(NVPTError, match=r"'resnet18' is a timm 'resnet' model, not a timm VisionTransformer"):
        build_model(tiny_cfg("model.name=resnet18", "model.kwargs=null"))  # ViT arguments (img_size) a ResNet rejects


@pytest.mark.parametrize("method", ["bitfit", "adapter", "lora", "ssf"])
def test_peft_baselines_are_refused_on_swin_in_one_line(method):
    # the PEFT baselines (nvpt/models/peft_vit.py) are built and tested on ViT only; adapter crashed on Swin with an
    # AttributeError and the others' deploy() folding was never checked there
    with pytest.raises(NVPTError, match=rf"prompt.method={method} does not run on Swin .*Swin takes linear, "):
        swin(f"prompt.method={method}")


def test_pretrained_file_for_swin(tmp_path):
    from safetensors.torch import save_file

    source = swin("prompt.method=full", "model.num_classes=7")
    weights = {k: v.contiguous() for k, v in source.backbone.state_dict().items()}
    save_file(weights, str(tmp_path / "swin.safetensors"))
    loaded = swin("prompt.method=vpt_deep", f"model.pretrained_file={tmp_path / 'swin.safetensors'}")
    own = loaded.backbone.state_dict()
    for key, value in weights.items():
        if not key.startswith("head."):
            assert torch.equal(own[key], value), key


def test_trained_run_exports_bit_packed_exactly(tmp_path):
    """A real spike_nvpt run on a 16 px Swin (8x8 grid in 2x2 windows, then 4x4): its bit-packed [R, P, G] prompts
    rebuild the deployed model exactly. (Its exact resume: tests/test_engine.py::test_resume_continues_exactly.)"""
    from nvpt.engine.restore import load_run
    from nvpt.export import export_packed, load_packed
    from nvpt.pipeline import run_training

    cfg = tiny_cfg(*SWIN[:1], "model.kwargs={patch_size: 2, window_size: 2, embed_dim: 16, depths: [1, 2], num_heads: [1, 2]}",
                   "model.img_size=16", "prompt.method=spike_nvpt", "data.name=textures", "data.crop_size=16",
                   "data.train_per_class=2", "data.test_per_class=2", "data.val_fraction=0.5", "data.num_workers=0",
                   "model.num_classes=null", "train.epochs=1", "train.warmup_epochs=0", "eval.gaussian_std=[0.2]",
                   "train.threads=1", f"output_dir={tmp_path}")
    run = run_training(cfg, log=lambda m: None, show_progress=False)
    info = export_packed(run.run_dir)
    packed = load_packed(info.path)
    reference = load_run(run.run_dir).model.deploy()
    assert tuple(packed.prompts.shape) == (1 + 2 + 2, 4, 16)  # [R, P, G]
    assert info.sizes["bits_bytes"] == (5 * 4 * 16) // 8  # 1 bit per prompt element
    assert torch.equal(packed.prompts.tokens, reference.prompts.tokens)
    images = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(packed(images), reference(images))


def test_swin_b_configs_change_only_the_model():
    """configs/swin/**: the task's own config (data, recipe, method) with Swin-B; built on the meta device (shapes
    only), deep prompts are 94 rows of 128 (2 + 2*2 + 18*4 + 2*8). Task configs still missing here are skipped."""
    from pathlib import Path

    from nvpt.config import load_config

    root = Path(__file__).resolve().parent.parent / "configs"
    pairs = [(root / "swin" / "dtd.yaml", root / "dtd.yaml")]
    pairs += [(path, root / "vtab" / path.name) for path in sorted((root / "swin" / "vtab").glob("*.yaml"))]
    present = [(swin_path, base) for swin_path, base in pairs if base.is_file()]
    assert len(pairs) == 20 and len(present) >= 6
    for swin_path, base in present:
        cfg, vit = load_config(swin_path), load_config(base)
        assert cfg.model.name == "swin_base_patch4_window7_224.ms_in22k" and cfg.model.kwargs is None
        for section in ("data", "prompt", "spike", "train", "eval"):
            assert cfg[section] == vit[section], f"{swin_path.name}: {section} differs from {base.name}"
        assert cfg.model.num_classes == vit.model.num_classes
    cfg = load_config(root / "swin" / "dtd.yaml", ["model.pretrained=false", "prompt.method=vpt_deep"])
    with torch.device("meta"):
        model = build_model(cfg)
    assert isinstance(model, PromptedSwin) and tuple(model.prompts.shape) == (94, cfg.prompt.length, 128)
    assert [len(s.blocks) for s in model.backbone.layers] == [2, 2, 18, 2]


def test_swin_b_forward_flops():
    """The cost estimate's count for Swin-B at 224 px: 15.4 GMACs in the Swin paper (Liu et al. 2021, Table 1);
    10 prompts in each of the 16 to 64 windows of every block add about 11 %."""
    from pathlib import Path

    from nvpt.config import load_config
    from nvpt.cost import forward_flops

    config = Path(__file__).resolve().parent.parent / "configs" / "swin" / "dtd.yaml"
    plain = forward_flops(load_config(config, ["prompt.method=linear"]))
    assert 2 * 15.3e9 < plain < 2 * 15.5e9
    assert 1.05 * plain < forward_flops(load_config(config, ["prompt.method=vpt_deep"])) < 1.2 * plain


def test_misspelt_swin_name_gets_a_suggestion():
    with pytest.raises(NVPTError, match="unknown timm model 'swin_base_patch4_window7_24'.*did you mean: swin_base_patch4_window7_224"):
        build_model(tiny_cfg("model.name=swin_base_patch4_window7_24"))
