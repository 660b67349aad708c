"""Bit-packed export of a trained Spike-NVPT model: 1 bit per prompt element, plus scale, shift and head.

A deployed Spike-NVPT prompt is `scale * b + shift` (`scale * (2b - 1) + shift` with spike.center;
scale and shift each optional), b in {0, 1} per element, so the binary pattern packs to
L*P*D/8 bytes: 1/32 of VPT's fp32 prompts of the same shape [L, P, D], plus the scale
([L, 1, D] per channel, [L, 1, 1] per layer, none) and the shift ([L, 1, D] or none).
One .safetensors file holds

    prompts/bits    uint8 [ceil(L*P*D / 8)]  numpy.packbits of b in C order over [L, P, D]
    prompts/scale   float32 [L, 1, D] | [L, 1, 1]   (absent with spike.scale=none)
    prompts/shift   float32 [L, 1, D]               (absent with spike.shift=none)
    head/<name>     the classifier's parameters (weight [C, D], bias [C])
    metadata        format, config (YAML text), shape, mapping, sizes, backbone and payload sha256

`load_packed` rebuilds the deployed model (a static prompt buffer: no SpikingJelly, no CuPy)
whose outputs equal the exported model's exactly, given the same backbone weights: both decode
with nvpt.models.binary_prompts.decode_binary. The sizes' `prompt_bits` is
nvpt.models.binary_prompts.prompt_bits, the figure results.json reports.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml
from safetensors.torch import save

from nvpt.config import Config, dump_config, load_config, load_config_text
from nvpt.engine.checkpoint import atomic_write, read_safetensors
from nvpt.engine.checkpoint import tensors_sha256 as _sha256
from nvpt.engine.restore import load_run, locate, rebuild_model
from nvpt.errors import NVPTError
from nvpt.models import PromptedViT
from nvpt.models.backbone import classifier_keys
from nvpt.models.binary_prompts import decode_binary, factor_shape, prompt_bits
from nvpt.outputs import check_output

FORMAT = "nvpt-packed-prompts-1"
DEFAULT_NAME = "prompts-packed.safetensors"


@dataclass
class PackedInfo:
    path: Path
    sizes: dict  # file_bytes, bits_bytes, scale_bytes, shift_bytes, prompt_payload_bytes, prompt_bits, fp32_vpt_prompt_bytes, ...


def backbone_sha256(model: PromptedViT) -> str:
    """Fingerprint of the frozen backbone (classifier excluded: it is exported)."""
    head = classifier_keys(model.backbone)
    return _sha256({k: v for k, v in model.backbone.state_dict().items() if k not in head})


def _scale_from_tokens(tokens: torch.Tensor, mode: str) -> torch.Tensor:
    """Scale of a deployed model's tokens [L, P, D] that no longer holds its learned scale: per
    group (channel: over P; layer: over P and D) the first non-zero token. Any value that
    reproduces the tokens exactly will do; the check in factor_tokens decides."""
    num_layers, length, dim = tokens.shape
    groups = tokens.transpose(1, 2) if mode == "channel" else tokens.reshape(num_layers, 1, length * dim)  # [L, G, K]
    first = (groups != 0).to(torch.uint8).argmax(dim=-1, keepdim=True)
    scale = groups.gather(-1, first)  # [L, G, 1]
    return scale.transpose(1, 2) if mode == "channel" else scale  # [L, 1, D] | [L, 1, 1]


def _shift_from_tokens(tokens: torch.Tensor, center: bool) -> torch.Tensor:
    """Shift [L, 1, D] of a deployed model's tokens that no longer holds its learned shift: per channel
    the lower of its two values (the middle of them with center). Checked like the scale."""
    low, high = tokens.amin(dim=1, keepdim=True), tokens.amax(dim=1, keepdim=True)
    return (low + high) / 2 if center else low


def unpack_tokens(bits: torch.Tensor, shape, scale: torch.Tensor | None, center: bool,
                  shift: torch.Tensor | None = None) -> torch.Tensor:
    """uint8 packed bits -> tokens [L, P, D] float32, the SpikePrompts formula: scale * b (+ shift) or scale * (2b - 1) (+ shift)."""
    count = math.prod(shape)
    binary = torch.from_numpy(np.unpackbits(bits.numpy(), count=count).reshape(tuple(shape))).float()
    return decode_binary(binary, scale, shift, center)


def factor_tokens(tokens: torch.Tensor, scale: torch.Tensor | None, scale_mode: str, center: bool,
                  shift: torch.Tensor | None = None, shift_mode: str = "none"):
    """Deployed tokens [L, P, D] -> (packed bits uint8, scale float32 or None, shift float32 or None), exact or NVPTError.

    `scale` and `shift` are the learned ones when the model still has them; else they are recovered from the tokens.
    """
    tokens = tokens.detach().float().cpu()
    if shift is None and shift_mode != "none":
        shift = _shift_from_tokens(tokens, center)
    shift = shift.detach().float().cpu().contiguous() if shift is not None else None
    if scale is None and scale_mode != "none":
        scale = _scale_from_tokens(tokens - shift if shift is not None else tokens, scale_mode)
    scale = scale.detach().float().cpu().contiguous() if scale is not None else None
    one = decode_binary(torch.ones(()), scale, shift, center)  # the value of b = 1, computed as the decoder does
    binary = tokens == one
    bits = torch.from_numpy(np.packbits(binary.numpy().astype(np.uint8).reshape(-1)))
    rebuilt = unpack_tokens(bits, tokens.shape, scale, center, shift)
    if not torch.equal(rebuilt, tokens):
        bad = int((rebuilt != tokens).sum())
        form = ("scale * (2b - 1)" if center else "scale * b") + (" + shift" if shift is not None else "")
        raise NVPTError(f"the deployed prompt tokens are not exactly {form} with binary b ({bad} of {tokens.numel()} "
                        "elements differ): they cannot be bit-packed; export the checkpoint itself instead"
                        + (" (a checkpoint saved before deploy() keeps the learned scale and shift)" if shift is not None else ""))
    return bits, scale, shift


def _serialise(tensors: dict[str, torch.Tensor], meta: dict[str, str], sizes: dict) -> bytes:
    """safetensors bytes whose metadata states the file's own size (a fixed point, reached in 1-3 passes)."""
    for _ in range(8):
        meta["sizes"] = json.dumps(sizes)
        blob = save(tensors, metadata=meta)
        if sizes.get("file_bytes") == len(blob):
            return blob
        sizes["file_bytes"] = len(blob)
    raise RuntimeError("the packed file's size did not settle")


def export_packed(run: str | Path, out: str | Path | None = None, overrides: list[str] | tuple = ()) -> PackedInfo:
    """Pack the deployed prompts + head of a spike_nvpt run folder (or checkpoint) into one file.

    out defaults to RUN/prompts-packed.safetensors; overrides (key=value) apply to the run's
    config, e.g. model.pretrained_file=... where the hub weights cannot be fetched.
    """
    run_dir, ckpt = locate(run)
    path = check_output(out if out is not None else run_dir / DEFAULT_NAME, inputs=[ckpt], what="--out")
    config = run_dir / "config.yaml"
    if not config.is_file():
        raise NVPTError(f"{run_dir} has no config.yaml next to {ckpt.name}; pass the run folder tools/train.py wrote")
    cfg = load_config(config, list(overrides))
    if cfg.prompt.method != "spike_nvpt":
        why = "its prompts are not binary" if cfg.prompt.method in ("vpt_shallow", "vpt_deep") else "it has no prompts"
        raise NVPTError(f"only spike_nvpt runs can be bit-packed; {run} is a {cfg.prompt.method} run "
                        f"({why}: use its checkpoint as it is)")
    loaded = load_run(ckpt, overrides)
    model, cfg = loaded.model, loaded.cfg
    # None once deployed: recovered from the tokens
    learned_scale, learned_shift = getattr(model.prompts, "scale", None), getattr(model.prompts, "shift", None)
    tokens = model.prompt_tokens()  # [L, P, D], eval mode: no noise, no dropout
    bits, scale, shift = factor_tokens(tokens, learned_scale, cfg.spike.scale, cfg.spike.center,
                                       learned_shift, cfg.spike.shift)
    head = {f"head/{n}": p.detach().cpu().contiguous() for n, p in model.backbone.get_classifier().named_parameters()}
    tensors = {"prompts/bits": bits, **head}
    if scale is not None:
        tensors["prompts/scale"] = scale
    if shift is not None:
        tensors["prompts/shift"] = shift
    num_layers, length, dim = tokens.shape
    scale_bytes = scale.numel() * 4 if scale is not None else 0
    shift_bytes = shift.numel() * 4 if shift is not None else 0
    sizes = {"bits_bytes": bits.numel(), "scale_bytes": scale_bytes, "shift_bytes": shift_bytes,
             "prompt_payload_bytes": bits.numel() + scale_bytes + shift_bytes,
             "prompt_bits": prompt_bits(cfg, tokens.shape),
             "fp32_vpt_prompt_bytes": num_layers * length * dim * 4,
             "head_bytes": sum(t.numel() * t.element_size() for t in head.values())}
    sizes["payload_vs_fp32"] = round(sizes["prompt_payload_bytes"] / sizes["fp32_vpt_prompt_bytes"], 6)
    mapping = "tokens = scale * (2 * bits - 1)" if cfg.spike.center else "tokens = scale * bits"
    meta = {
        "format": FORMAT,
        "config": dump_config(cfg),
        "prompt_shape": json.dumps([num_layers, length, dim]),
        "mapping": mapping + (" + shift" if shift is not None else ""),
        "scale_mode": cfg.spike.scale,
        "shift_mode": cfg.spike.shift,
        "bit_order": "numpy.packbits (most significant bit first) over bits flattened in C order of [L, P, D]",
        "backbone_sha256": backbone_sha256(model),
        "payload_sha256": _sha256(tensors),
        "source": f"{run_dir.name}/{ckpt.name}",
    }
    blob = _serialise(tensors, meta, sizes)
    atomic_write(path, lambda tmp: tmp.write_bytes(blob))
    return PackedInfo(path, sizes)


def describe_sizes(sizes: dict, shape) -> str:
    num_layers, length, dim = shape
    shift = f" + shift {sizes['shift_bytes']:,}" if sizes.get("shift_bytes") else ""
    return (f"file {sizes['file_bytes']:,} bytes; prompt payload {sizes['prompt_payload_bytes']:,} bytes "
            f"(bits {sizes['bits_bytes']:,} + scale {sizes['scale_bytes']:,}{shift}) vs {sizes['fp32_vpt_prompt_bytes']:,} bytes "
            f"of fp32 VPT prompts [{num_layers}x{length}x{dim}] = {100 * sizes['payload_vs_fp32']:.2f}% "
            f"(bits alone 1/32); {sizes['prompt_bits']:,} prompt bits; head {sizes['head_bytes']:,} bytes")


def read_packed(path: str | Path) -> tuple[dict[str, torch.Tensor], dict, Config]:
    """Tensors, metadata (sizes and shape decoded) and config of a packed file, every part checked."""
    path = Path(path)
    if not path.is_file():
        raise NVPTError(f"packed prompts file not found: {path} (write it with tools/export_prompts.py RUN)")
    tensors, meta = read_safetensors(path, "packed prompts")
    if meta.get("format") != FORMAT:
        raise NVPTError(f"{path} is not a packed Spike-NVPT prompt file (no '{FORMAT}' metadata)")
    try:
        shape = json.loads(meta["prompt_shape"])
        meta["sizes"] = json.loads(meta["sizes"])
        cfg = load_config_text(meta["config"], f"{path} metadata")
        checksum = meta["payload_sha256"]
    except (KeyError, ValueError, yaml.YAMLError) as exc:
        raise NVPTError(f"packed prompts {path}: damaged metadata ({type(exc).__name__}: {exc})") from None
    if _sha256(tensors) != checksum:
        raise NVPTError(f"packed prompts {path} are corrupted: the tensors do not match their sha256 (re-export the run)")
    if not (isinstance(shape, list) and len(shape) == 3 and all(isinstance(n, int) and n > 0 for n in shape)):
        raise NVPTError(f"packed prompts {path}: prompt_shape must be [L, P, D], got {shape!r}")
    bits = tensors.get("prompts/bits")
    if bits is None or bits.dtype != torch.uint8 or bits.shape != (math.ceil(math.prod(shape) / 8),):
        raise NVPTError(f"packed prompts {path}: prompts/bits must be uint8 [{math.ceil(math.prod(shape) / 8)}] for shape {shape}")
    meta["prompt_shape"] = shape
    return tensors, meta, cfg


def load_packed(path: str | Path, backbone_weights: str | Path | None = None, check_backbone: bool = True) -> PromptedViT:
    """Deployed PromptedViT (eval mode, CPU) from a packed file; needs no SpikingJelly or CuPy.

    The backbone comes from the stored config (hub weights, model.pretrained_file, or the run's
    seeded random init) unless backbone_weights names a weights file. Its sha256 must match the
    exported one (check_backbone=False skips that, e.g. for a deliberately different backbone).
    """
    tensors, meta, cfg = read_packed(path)
    if backbone_weights is not None:
        cfg.model["pretrained"], cfg.model["pretrained_file"] = False, str(backbone_weights)
    model = rebuild_model(cfg, deployed=True)
    if check_backbone and backbone_sha256(model) != meta.get("backbone_sha256"):
        raise NVPTError(f"the backbone built for {path} differs from the one its prompts were exported with "
                        "(sha256 mismatch): pass backbone_weights= the run's backbone weights file, "
                        "or check_backbone=False to use another backbone on purpose")
    shape = meta["prompt_shape"]
    if tuple(model.prompts.shape) != tuple(shape):
        raise NVPTError(f"packed prompts {path}: shape {shape} does not fit the model's prompts {list(model.prompts.shape)}")
    factors = {}
    for name in ("scale", "shift"):
        factors[name] = tensors.get(f"prompts/{name}")
        mode = cfg.spike[name]
        expected = factor_shape(mode, shape[0], shape[2])
        if (tuple(factors[name].shape) if factors[name] is not None else None) != expected:
            raise NVPTError(f"packed prompts {path}: prompts/{name} must be {list(expected) if expected else 'absent'} "
                            f"for spike.{name}={mode}")
    head = {k[len("head/"):]: v for k, v in tensors.items() if k.startswith("head/")}
    try:
        model.backbone.get_classifier().load_state_dict(head)
    except RuntimeError as exc:
        raise NVPTError(f"packed prompts {path}: the head does not fit the model ({str(exc).splitlines()[0]})") from None
    with torch.no_grad():
        model.prompts.tokens.copy_(unpack_tokens(tensors["prompts/bits"], shape, factors["scale"], cfg.spike.center,
                                                 factors["shift"]))
    return model.eval()
