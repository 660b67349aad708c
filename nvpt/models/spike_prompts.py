"""Spike-NVPT prompts: latent current U -> Signal Filtering Layer -> Spike Discretization Unit.

Our reading of the abstract (arXiv 2604.18284), every choice a config key under `spike.`:
  U [L, P, D]          latent prompt current, U ~ Uniform(init_low, init_high) * v_threshold,
                       so about half the neurons reach a firing rate of 1/2 at init
  I_t = U + s * xi_t   t = 1..T, fresh noise each step and iteration while training (s = noise_std)
  spikes = IF(I)       SpikingJelly IFNode, multi-step, soft or hard reset, surrogate gradient
  b = SDU(spikes)      binary {0,1}: rate >= 1/2 (straight-through) or last-step spike
  tokens = scale * b   (or scale * (2b - 1) with spike.center) with a learned per-channel/per-layer scale
The SFL runs on the prompt tensor once per forward pass; its cost does not depend on the batch.
"""
from __future__ import annotations

import torch
from torch import nn

_NOISE_SEED_STRIDE = 1_000_003  # separates the noise streams of different seeds


class SpikePrompts(nn.Module):
    def __init__(self, num_layers: int, length: int, dim: int, spike_cfg, default_scale: float, seed: int = 0):
        super().__init__()
        from nvpt.spiking import SignalFilteringLayer, SpikeDiscretizationUnit  # lazy: deploy needs no SpikingJelly

        s = spike_cfg
        self.time_steps = s.time_steps
        self.v_threshold = s.v_threshold
        self.noise_std = s.noise_std
        self.center = s.center
        self.target_rate = s.target_rate
        self.seed = seed
        low, high = s.init_low * s.v_threshold, s.init_high * s.v_threshold
        self.current = nn.Parameter(torch.empty(num_layers, length, dim).uniform_(low, high))  # U [L, P, D]
        self.filter = (
            SignalFilteringLayer(s.time_steps, s.v_threshold, s.reset, s.surrogate, s.surrogate_alpha, s.backend)
            if s.filter == "if" else None
        )
        self.discretize = SpikeDiscretizationUnit(s.discretize, s.rate_threshold)
        if s.filter == "none":
            from nvpt.spiking.backend import make_surrogate

            self.direct_spike = make_surrogate(s.surrogate, s.surrogate_alpha)
        scale_init = default_scale if s.scale_init is None else s.scale_init
        scale_shape = {"channel": (num_layers, 1, dim), "layer": (num_layers, 1, 1)}.get(s.scale)
        self.scale = nn.Parameter(torch.full(scale_shape, float(scale_init))) if scale_shape else None
        # Counts training forward passes: the noise of step k is a pure function of (seed, k),
        # identical on every DDP rank and exactly reproducible after a resume.
        self.register_buffer("noise_step", torch.zeros((), dtype=torch.long))
        self.last_rate: torch.Tensor | None = None  # mean firing rate of the last forward (for the penalty)

    @property
    def shape(self) -> torch.Size:
        return self.current.shape  # [L, P, D]

    def _noise(self, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
        gen = torch.Generator(device=device)
        gen.manual_seed(self.seed * _NOISE_SEED_STRIDE + int(self.noise_step))
        return torch.randn(shape, generator=gen, device=device, dtype=torch.float32)

    def spike_train(self, noise_std: float | None = None, add_noise: bool | None = None) -> torch.Tensor:
        """Spikes [T, L, P, D]. Noise defaults to training mode; plots may inject any noise_std."""
        U = self.current.float()  # the SFL always runs in float32 (CuPy kernel: fp32/fp16, never bf16)
        std = self.noise_std if noise_std is None else noise_std
        add_noise = self.training if add_noise is None else add_noise
        steps = self.time_steps if self.filter is not None else 1  # the no-filter ablation binarises once
        currents = U.unsqueeze(0).expand(steps, *U.shape)  # [T, L, P, D]
        if add_noise and std > 0:
            currents = currents + std * self._noise(tuple(currents.shape), U.device)
        if self.filter is None:  # ablation: binarise each step's current directly, no integration
            return self.direct_spike(currents - self.v_threshold)
        return self.filter(currents)

    def forward(self) -> torch.Tensor:
        with torch.autocast(device_type=self.current.device.type, enabled=False):
            spikes = self.spike_train()
            if self.training:
                self.noise_step += 1
            binary = self.discretize(spikes)  # [L, P, D] in {0, 1}
            self.last_rate = spikes.mean()
            tokens = 2 * binary - 1 if self.center else binary
            return tokens * self.scale if self.scale is not None else tokens

    def rate_loss(self) -> torch.Tensor | None:
        """(mean firing rate - target)^2 of the last forward, or None without a target."""
        if self.target_rate is None or self.last_rate is None:
            return None
        return (self.last_rate - self.target_rate) ** 2
