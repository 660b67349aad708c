"""Prompt sources: modules that return the prompt tokens entering each layer, [L, P, D].

L = number of layers that receive prompts (1 when shallow, depth when deep),
P = prompt length, D = embedding width. The prompted ViT calls the source once per
forward pass (never per image) and broadcasts the tokens over the batch.
"""
from __future__ import annotations

import torch
from torch import nn


class VPTPrompts(nn.Module):
    """Continuous prompt tokens, VPT's init: uniform in [-bound, bound]."""

    def __init__(self, num_layers: int, length: int, dim: int, init_bound: float):
        super().__init__()
        self.tokens = nn.Parameter(torch.empty(num_layers, length, dim).uniform_(-init_bound, init_bound))

    @property
    def shape(self) -> torch.Size:
        return self.tokens.shape

    def forward(self) -> torch.Tensor:
        return self.tokens


class StaticPrompts(nn.Module):
    """Frozen tokens (a deployed Spike-NVPT model): a buffer, no SpikingJelly needed."""

    def __init__(self, tokens: torch.Tensor):
        super().__init__()
        self.register_buffer("tokens", tokens.detach().clone())

    @property
    def shape(self) -> torch.Size:
        return self.tokens.shape

    def forward(self) -> torch.Tensor:
        return self.tokens
