"""Binary prompt format: decoding b -> tokens, the shapes of its float factors, its storage in bits.

A Spike-NVPT prompt is b in {0, 1}^[L, P, D] decoded as

    tokens = scale * b + shift        (scale * (2b - 1) + shift with spike.center)

with an optional learned scale ([L, 1, D] per channel, [L, 1, 1] per layer) and an optional
learned shift ([L, 1, D] per channel, shared by a layer's P tokens). Training (SpikePrompts),
the bit-packed export and its loader all decode with `decode_binary`, so the same float
operations run in the same order everywhere and a packed file reproduces the deployed
tokens exactly. Nothing here imports SpikingJelly.
"""
from __future__ import annotations

import math

import torch

_SHAPES = {"channel": lambda layers, dim: (layers, 1, dim), "layer": lambda layers, dim: (layers, 1, 1)}


def factor_shape(mode: str, num_layers: int, dim: int) -> tuple[int, int, int] | None:
    """Shape of a scale or shift for spike.scale / spike.shift = mode ('none': no tensor)."""
    return _SHAPES[mode](num_layers, dim) if mode != "none" else None


def decode_binary(binary: torch.Tensor, scale: torch.Tensor | None, shift: torch.Tensor | None,
                  center: bool) -> torch.Tensor:
    """b [L, P, D] in {0, 1} -> tokens: scale * b (+ shift), or scale * (2b - 1) (+ shift) with center."""
    tokens = 2 * binary - 1 if center else binary
    if scale is not None:
        tokens = tokens * scale
    return tokens + shift if shift is not None else tokens


def prompt_bits(cfg, shape) -> int:
    """Storage of the deployed prompts in bits, for prompts of shape [L, P, D].

    spike_nvpt: 1 bit per element + 32 bits per float of the scale and the shift;
    vpt_shallow / vpt_deep: 32 bits per element (fp32 tokens); linear / full: no prompts, 0.
    """
    num_layers, length, dim = (int(n) for n in shape)
    method = cfg.prompt.method
    if method in ("vpt_shallow", "vpt_deep"):
        return 32 * num_layers * length * dim
    if method != "spike_nvpt" or num_layers * length == 0:
        return 0
    floats = sum(math.prod(s) for s in (factor_shape(cfg.spike.scale, num_layers, dim),
                                        factor_shape(cfg.spike.shift, num_layers, dim)) if s is not None)
    return num_layers * length * dim + 32 * floats
