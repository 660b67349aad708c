"""AdaptFormer's parallel bottleneck adapter (Chen et al., "AdaptFormer: Adapting Vision Transformers for
Scalable Visual Recognition", NeurIPS 2022, arXiv:2205.13535), attached to timm's blocks by a forward hook.

In every block the adapter runs beside the frozen MLP on the MLP's input and its output is added to the MLP's:

    mlp(x) -> mlp(x) + s * up(dropout(relu(down(x))))        x = norm2(residual stream)  [B, N, D]

down: D -> bottleneck, up: bottleneck -> D, s a fixed scale (adapter.scale, AdaptFormer's 0.1). Init as
AdaptFormer's "lora" option: down Kaiming-uniform, up and both biases zero, so training starts at the frozen
model. *(our reading)* The adapter reads the MLP's input, i.e. the residual stream after norm2, so that one
hook on timm's Mlp attaches it; AdaptFormer's code feeds it the residual stream before norm2 (its adapter's
own LayerNorm off). Everything after the MLP (timm's ls2 and drop_path2) applies to the sum, as to the MLP.

The adapter is a child `adapter` of each block's `mlp` (parameters backbone.blocks.<i>.mlp.adapter.*), and
the hook is a module-level function of the hooked module only: timm's forward runs unmodified. The ReLU
bottleneck is not linear, so it cannot be folded into the frozen weights: a deployed model keeps it.
"""
from __future__ import annotations

import math

import torch
from torch import nn


class ParallelAdapter(nn.Module):
    def __init__(self, dim: int, bottleneck: int, scale: float, dropout: float = 0.0):
        super().__init__()
        self.down = nn.Linear(dim, bottleneck)
        self.act = nn.ReLU()
        self.dropout = nn.Dropout(dropout)
        self.up = nn.Linear(bottleneck, dim)
        self.scale = scale  # a fixed float, not a parameter (AdaptFormer's adapter_scalar)
        with torch.no_grad():
            nn.init.kaiming_uniform_(self.down.weight, a=math.sqrt(5))
            nn.init.zeros_(self.down.bias)
            nn.init.zeros_(self.up.weight)
            nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.dropout(self.act(self.down(x)))) * self.scale

    def extra_repr(self) -> str:
        return f"scale={self.scale}"


def _adapter_hook(module: nn.Module, args, output: torch.Tensor) -> torch.Tensor:
    return output + module.adapter(args[0])


def attach_adapters(backbone: nn.Module, bottleneck: int, scale: float, dropout: float) -> list[ParallelAdapter]:
    """One ParallelAdapter beside every block's MLP; returns them in block order."""
    adapters = []
    for block in backbone.blocks:
        dim = block.mlp.fc1.in_features
        block.mlp.adapter = ParallelAdapter(dim, bottleneck, scale, dropout)
        block.mlp.register_forward_hook(_adapter_hook)
        adapters.append(block.mlp.adapter)
    return adapters
