"""SSF: scaling and shifting the features (Lian et al., "Scaling & Shifting Your Features: A New Baseline for
Efficient Model Tuning", NeurIPS 2022, arXiv:2210.08823), attached to timm's modules by forward hooks.

After every linear and normalisation operation of the frozen backbone, as SSF's ViT does (the patch
embedding's convolution, each block's norm1, qkv, proj, norm2, fc1, fc2, and the final norm; the classifier
head excluded, it trains as it is), a learned per-channel scale and shift modulate the output:

    y = op(x)  ->  gamma * y + beta              gamma, beta [C], C the op's output channels

gamma starts at N(1, ssf.init_std^2), beta at N(0, ssf.init_std^2) (SSF's init, std 0.02). The scale and
shift of a module live in its child `ssf` (parameters e.g. backbone.blocks.0.attn.qkv.ssf.scale).

Every hooked op is affine in its output, so `fold_ssf` re-parameterises it exactly as SSF's paper does for
inference: W' = gamma[:, None] * W and b' = gamma * b + beta (Linear, Conv2d per output channel, a
LayerNorm's affine weight and bias); the hooks go and the model is the bare backbone with new weights.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

CHILD = "ssf"


class ScaleShift(nn.Module):
    def __init__(self, channels: int, channel_dim: int, init_std: float):
        super().__init__()
        self.channel_dim = channel_dim  # -1: [..., C] (Linear, LayerNorm); 1: [B, C, H, W] (Conv2d)
        self.scale = nn.Parameter(torch.empty(channels))
        self.shift = nn.Parameter(torch.empty(channels))
        with torch.no_grad():
            nn.init.normal_(self.scale, mean=1.0, std=init_std)
            nn.init.normal_(self.shift, mean=0.0, std=init_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channel_dim == -1:
            return x * self.scale + self.shift
        view = (-1,) + (1,) * (x.ndim - 2)
        return x * self.scale.view(view) + self.shift.view(view)


def _ssf_hook(module: nn.Module, args, output: torch.Tensor):
    ssf = module._modules.get(CHILD)  # gone after fold_ssf: the hook is then a no-op (and is removed)
    return ssf(output) if ssf is not None else None


def ssf_targets(backbone: nn.Module) -> list[tuple[str, nn.Module, int, int]]:
    """(name, module, output channels, channel dim) of every op SSF follows: each Linear and LayerNorm
    (with an affine weight) of the backbone, and the patch embedding's Conv2d; not the classifier head."""
    head = backbone.get_classifier()
    head_modules = {id(m) for m in head.modules()} if isinstance(head, nn.Module) else set()
    targets = []
    for name, module in backbone.named_modules():
        if id(module) in head_modules:
            continue
        if isinstance(module, nn.Linear):
            targets.append((name, module, module.out_features, -1))
        elif isinstance(module, nn.LayerNorm) and module.weight is not None and len(module.normalized_shape) == 1:
            targets.append((name, module, module.normalized_shape[0], -1))
        elif isinstance(module, nn.Conv2d) and name.startswith("patch_embed"):
            targets.append((name, module, module.out_channels, 1))
    return targets


def attach_ssf(backbone: nn.Module, init_std: float) -> tuple[list[ScaleShift], list[RemovableHandle]]:
    """A ScaleShift after every target op; returns the modules and their hook handles."""
    modules, handles = [], []
    for _name, module, channels, channel_dim in ssf_targets(backbone):
        setattr(module, CHILD, ScaleShift(channels, channel_dim, init_std))
        modules.append(getattr(module, CHILD))
        handles.append(module.register_forward_hook(_ssf_hook))
    return modules, handles


@torch.no_grad()
def fold_ssf(backbone: nn.Module, handles: list[RemovableHandle]) -> int:
    """Fold every op's scale and shift into its weight and bias, remove the ScaleShift children and the hooks;
    returns how many ops were folded."""
    folded = 0
    for module in backbone.modules():
        ssf = module._modules.get(CHILD)
        if not isinstance(ssf, ScaleShift):
            continue
        scale, shift = ssf.scale.detach(), ssf.shift.detach()
        weight = module.weight
        weight.mul_(scale.view((-1,) + (1,) * (weight.ndim - 1)).to(weight.dtype))
        if module.bias is None:
            module.bias = nn.Parameter(shift.clone().to(weight.dtype), requires_grad=False)
        else:
            module.bias.mul_(scale.to(module.bias.dtype)).add_(shift.to(module.bias.dtype))
        del module._modules[CHILD]
        folded += 1
    for handle in handles:
        handle.remove()
    handles.clear()
    return folded
