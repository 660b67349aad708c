"""The frozen backbone: any timm VisionTransformer or SwinTransformer, with weights from the hub, a local file, or none."""
from __future__ import annotations

import difflib
import logging
from pathlib import Path

import timm
import torch
import yaml
from timm.models import swin_transformer
from timm.models.swin_transformer import SwinTransformer
from timm.models.vision_transformer import VisionTransformer, checkpoint_filter_fn

from nvpt.config import check_pretrained_file
from nvpt.errors import NVPTError

log = logging.getLogger("nvpt")


def _check_model_name(name: str) -> None:
    arch = name.split(".")[0]
    if timm.is_model(name) or timm.is_model(arch):
        return
    close = difflib.get_close_matches(arch, timm.list_models(["vit_*", "swin_*"]), n=3, cutoff=0.6)
    hint = f"; did you mean: {', '.join(close)}?" if close else " (see timm.list_models('vit_*') and 'swin_*')"
    raise NVPTError(f"unknown timm model '{name}' in model.name{hint}")


# ViT sizes that timm turns into a bare ZeroDivisionError or a negative-dimension error when below 1.
POSITIVE_SIZES = {"patch_size": "patch side in pixels, e.g. 16", "embed_dim": "token width, e.g. 192",
                  "num_heads": "attention heads, e.g. 3", "depth": "transformer blocks to prompt, e.g. 12",
                  "depths": "Swin blocks per stage, e.g. [2, 2, 18, 2]", "window_size": "Swin window side in tokens, e.g. 7"}

# The timm families the prompts attach to (nvpt.models.prompted_vit / prompted_swin); docs/method.md says which
# others would be easy. Each maps to timm's own checkpoint filter (original key names -> timm's, resampling).
SUPPORTED = {VisionTransformer: checkpoint_filter_fn, SwinTransformer: swin_transformer.checkpoint_filter_fn}
FAMILY_MODULES = ("vision_transformer", "vision_transformer_hybrid", "deit", "swin_transformer")  # timm modules building them


def _check_sizes(kwargs: dict) -> None:
    for key, meaning in POSITIVE_SIZES.items():
        if key not in kwargs:
            continue
        value = kwargs[key]
        parts = value if isinstance(value, (list, tuple)) else [value]
        if not parts or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in parts):
            raise NVPTError(f"model.kwargs {key}={value!r} must be a positive integer ({meaning})")


def _family_error(name: str, what: str) -> str:
    return (f"model.name '{name}' is {what}, not a timm VisionTransformer or SwinTransformer; "
            "pick a vit_* (deit_*, ...) or swin_* model (docs/method.md names the families that would be easy to add)")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a .safetensors/.pth/.bin/.pt file, without ever unpickling code."""
    path = Path(path)
    if not path.is_file():
        raise NVPTError(f"weights file not found: {path} (check model.pretrained_file)")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated file, pickle with code, wrong format
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise NVPTError(f"cannot read weights file {path}: {first[:300]} (only plain tensor files are accepted)") from None
    for wrapper in ("model", "state_dict", "module"):  # common training-checkpoint wrappers
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise NVPTError(f"weights file {path} does not hold a flat mapping of tensor names to tensors")
    return state


def classifier_keys(model: VisionTransformer | SwinTransformer) -> set[str]:
    """state_dict keys of the classifier (ViT: head.weight, head.bias; Swin: head.fc.weight, head.fc.bias)."""
    classifier = model.get_classifier()
    prefix = next(name for name, module in model.named_modules() if module is classifier)
    return {f"{prefix}.{n}" for n, _ in classifier.named_parameters()}


def load_backbone_file(model: VisionTransformer | SwinTransformer, path: str | Path) -> None:
    """Load a local backbone checkpoint; the classifier is kept only when its shape fits.

    timm's own filter of the family converts original/JAX key names and resamples the position
    embedding (ViT) or the relative position tables (Swin) when the sizes differ. Anything else
    that does not fit is an error that lists the mismatched keys.
    """
    state = next(f for cls, f in SUPPORTED.items() if isinstance(model, cls))(read_state_dict(path), model)
    own = model.state_dict()
    head_keys = classifier_keys(model)
    state = {k: v for k, v in state.items() if not (k in head_keys and own.get(k) is not None and own[k].shape != v.shape)}
    wrong_shape = [f"{k} {tuple(v.shape)}!={tuple(own[k].shape)}" for k, v in state.items() if k in own and own[k].shape != v.shape]
    missing = sorted(set(own) - set(state) - head_keys)
    unexpected = sorted(set(state) - set(own))
    if wrong_shape or missing or unexpected:
        parts = []
        for label, keys in (("wrong shape", wrong_shape), ("missing", missing), ("unexpected", unexpected)):
            if keys:
                more = f" (+{len(keys) - 5} more)" if len(keys) > 5 else ""
                parts.append(f"{label}: {', '.join(keys[:5])}{more}")
        raise NVPTError(f"weights file {path} does not fit {type(model).__name__} '{model.pretrained_cfg.get('architecture')}': " + "; ".join(parts))
    model.load_state_dict(state, strict=False)
    log.info("loaded backbone weights from %s", path)


def create_backbone(cfg) -> VisionTransformer | SwinTransformer:
    """timm ViT or Swin per cfg.model; num_classes must already be resolved (an int)."""
    m = cfg.model
    _check_model_name(m.name)
    check_pretrained_file(cfg)  # before timm builds anything: the error says how to make the file
    kwargs = {"num_classes": m.num_classes}
    if m.img_size is not None:
        kwargs["img_size"] = m.img_size
    if m.in_chans is not None:
        kwargs["in_chans"] = m.in_chans
    if m.kwargs:
        try:
            extra = yaml.safe_load(m.kwargs)
        except yaml.YAMLError as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise NVPTError(f"config key 'model.kwargs' is not valid safe YAML ({first}): {m.kwargs!r}; "
                            "give a mapping such as '{embed_dim: 192}'") from None
        if not isinstance(extra, dict):
            raise NVPTError(f"config key 'model.kwargs' must be a YAML mapping such as '{{embed_dim: 192}}', got {m.kwargs!r}")
        kwargs.update(extra)
        _check_sizes(extra)
    use_hub = m.pretrained and not m.pretrained_file
    try:
        model = timm.create_model(m.name, pretrained=use_hub, **kwargs)
    except NVPTError:
        raise
    except (TypeError, ValueError, AssertionError) as exc:
        module = timm.models.model_entrypoint(m.name.split(".")[0]).__module__.rsplit(".", 1)[-1]
        if module not in FAMILY_MODULES:  # e.g. a ResNet given ViT arguments: say what is supported instead
            raise NVPTError(_family_error(m.name, f"a timm '{module}' model")) from None
        raise NVPTError(f"timm cannot build '{m.name}' with {kwargs}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    except Exception as exc:
        if not use_hub:  # nothing was downloaded: timm rejected the arguments (negative sizes, patch 0, ...)
            first = str(exc).splitlines()[0] if str(exc) else ""
            raise NVPTError(f"timm cannot build '{m.name}' with {kwargs}: {type(exc).__name__}: {first}") from None
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise NVPTError(
            f"could not fetch pretrained weights for '{m.name}' from the hub ({reason}); on a machine without "
            "internet pass model.pretrained_file=/path/to/weights.safetensors (or model.pretrained=false for random init)"
        ) from None
    if not isinstance(model, tuple(SUPPORTED)):
        raise NVPTError(_family_error(m.name, f"a {type(model).__name__}"))
    if isinstance(model, SwinTransformer):
        if not len(model.layers) or any(len(stage.blocks) == 0 for stage in model.layers):
            raise NVPTError(f"model '{m.name}' with {kwargs} has a stage of depth 0: every Swin stage needs a block")
    elif len(model.blocks) == 0:
        raise NVPTError(f"model '{m.name}' with {kwargs} has depth 0: no transformer blocks to prompt")
    if model.patch_embed.num_patches == 0:
        raise NVPTError(f"model.img_size={model.patch_embed.img_size[0]} is smaller than the "
                        f"{model.patch_embed.patch_size[0]} px patch: no image tokens; raise model.img_size")
    if m.pretrained_file:
        load_backbone_file(model, m.pretrained_file)
    return model


def vpt_init_bound(model: VisionTransformer | SwinTransformer) -> float:
    """VPT's prompt init bound sqrt(6 / (3*ph*pw + D)) (Xavier uniform over a patch projection); D is the
    patch embedding's width (Swin: stage 0's, for the prompts of every stage, as the VPT reference does)."""
    ph, pw = model.patch_embed.patch_size
    dim = model.embed_dim if isinstance(model.embed_dim, int) else model.embed_dim[0]  # Swin takes a list too
    return (6.0 / (3 * ph * pw + dim)) ** 0.5
