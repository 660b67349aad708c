"""Spike Discretization Unit (SDU): spike train -> binary prompt.

`rate`: an element is 1 when its firing rate over the T steps reaches `rate_threshold`
(default 1/2), with a straight-through gradient to the rate (and through the
surrogate spikes to the latent current). `last`: the spike of the last step, whose
gradient is the surrogate gradient of that step. Given uniform draws, the rate rule samples
b ~ Bernoulli(rate) instead (spike.stochastic, after BinaryConnect's stochastic binarisation).
"""
from __future__ import annotations

import torch
from torch import nn


class SpikeDiscretizationUnit(nn.Module):
    def __init__(self, rule: str = "rate", rate_threshold: float = 0.5):
        super().__init__()
        if rule not in ("rate", "last"):
            raise ValueError(f"rule must be rate or last, got {rule!r}")
        self.rule = rule
        self.rate_threshold = rate_threshold

    def forward(self, spikes: torch.Tensor, uniform: torch.Tensor | None = None) -> torch.Tensor:
        """spikes [T, *shape] -> binary [*shape] in {0, 1}.

        uniform [*shape] in [0, 1) (rate rule only): stochastic binarisation, b = 1 where
        uniform < rate, i.e. b ~ Bernoulli(rate), with the same straight-through gradient.
        """
        if self.rule == "last":
            return spikes[-1]
        rate = spikes.mean(dim=0)
        if uniform is not None:
            hard = (uniform < rate).to(rate.dtype)
        else:
            hard = (rate >= self.rate_threshold - 1e-6).to(rate.dtype)  # 1e-6: rate k/T is inexact in float
        return rate + (hard - rate).detach()  # value: hard; gradient: d rate
