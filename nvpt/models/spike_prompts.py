"""Spike-NVPT prompts: latent current U -> Signal Filtering Layer -> Spike Discretization Unit.

Our reading of the abstract (arXiv 2604.18284), every choice a config key under `spike.`:
  U [L, P, D]          latent prompt current, U ~ Uniform(init_low, init_high) * v_threshold,
                       so about half the neurons reach a firing rate of 1/2 at init
  I_t = U + s * xi_t   t = 1..T, fresh noise each step and iteration while training
                       (s = noise_std * a factor of spike.noise_schedule: constant 1, or 1 -> 0 over training)
  spikes = IF(I)       SpikingJelly IFNode, multi-step, soft or hard reset, surrogate gradient
                       (spike.persistent: the membrane carries over from one training iteration to the next)
  b = SDU(spikes)      binary {0,1}: rate >= 1/2 (straight-through) or last-step spike
                       (spike.stochastic: b ~ Bernoulli(rate) while training; spike.gradient=ste: dL/dU = dL/db)
  tokens = scale * b + shift   (scale * (2b - 1) + shift with spike.center), learned per-channel/per-layer
                       scale, optional per-channel shift (nvpt.models.binary_prompts.decode_binary)
The SFL runs on the prompt tensor once per forward pass; its cost does not depend on the batch.
"""
from __future__ import annotations

import math
from contextlib import nullcontext

import torch
from torch import nn

from nvpt.errors import NVPTError
from nvpt.models.binary_prompts import decode_binary, factor_shape

_NOISE_SEED_STRIDE = 1_000_003  # separates the noise streams of different seeds
_SAMPLING_STREAM = 1 << 62  # offset of the Bernoulli draws (spike.stochastic) from the noise stream


class SpikePrompts(nn.Module):
    def __init__(self, num_layers: int, length: int, dim: int, spike_cfg, default_scale: float, seed: int = 0):
        super().__init__()
        from nvpt.spiking import SignalFilteringLayer, SpikeDiscretizationUnit  # lazy: deploy needs no SpikingJelly

        s = spike_cfg
        self.time_steps = s.time_steps
        self.v_threshold = s.v_threshold
        self.noise_std = s.noise_std
        self.noise_schedule = s.noise_schedule
        self.center = s.center
        self.target_rate = s.target_rate
        self.gradient = s.gradient
        self.stochastic = s.stochastic
        self.persistent = s.persistent
        self.current_lr_scale = s.current_lr_scale
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
        scale_shape = factor_shape(s.scale, num_layers, dim)
        self.scale = nn.Parameter(torch.full(scale_shape, float(scale_init))) if scale_shape else None
        shift_shape = factor_shape(s.shift, num_layers, dim)
        self.shift = nn.Parameter(torch.zeros(shift_shape)) if shift_shape else None
        # Counts training forward passes: the noise of step k is a pure function of (seed, k),
        # identical on every DDP rank and exactly reproducible after a resume.
        self.register_buffer("noise_step", torch.zeros((), dtype=torch.long))
        if self.persistent:  # buffers only when on: checkpoints of the other variants keep their keys
            # the IF membrane potential after the last training iteration (detached), and the bits
            # that iteration produced: what eval and deploy use once a training step has run
            self.register_buffer("membrane", torch.zeros(num_layers, length, dim))
            self.register_buffer("last_bits", torch.zeros(num_layers, length, dim))
        # Total training forward passes, for spike.noise_schedule: a plain attribute set by the engine
        # (set_training_steps) from the config and the loader length at every start, resume included.
        # Not a buffer: it is configuration, not state; a buffer would change the checkpoint keys of
        # every run and would let a checkpoint override the schedule of the run that loads it.
        self.total_steps: int | None = None
        self.last_rate: torch.Tensor | None = None  # mean firing rate of the last forward (for the penalty)

    @property
    def shape(self) -> torch.Size:
        return self.current.shape  # [L, P, D]

    def set_training_steps(self, total: int) -> None:
        """The number of training forward passes of the run (the noise schedule ends at the last one)."""
        self.total_steps = int(total)

    def lr_scales(self) -> dict[str, float]:
        """Learning-rate multipliers of this module's parameters that differ from 1 (spike.current_lr_scale)."""
        return {"current": self.current_lr_scale} if self.current_lr_scale != 1.0 else {}

    def noise_factor(self, step: int | None = None) -> float:
        """Multiplier of noise_std at training step `step` (default: the next one, noise_step): 1 at
        step 0, 0 at the last step total_steps - 1 (linear or cosine); always 1 when constant."""
        if self.noise_schedule == "constant":
            return 1.0
        if self.total_steps is None:
            raise NVPTError(f"spike.noise_schedule={self.noise_schedule} needs the run's length: call "
                            "model.set_training_steps(total_iterations) before training (run_training does)")
        step = int(self.noise_step) if step is None else step
        progress = min(step / max(self.total_steps - 1, 1), 1.0)
        if self.noise_schedule == "linear":
            return 1.0 - progress
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    def _generator(self, device: torch.device, stream: int = 0) -> torch.Generator:
        gen = torch.Generator(device=device)
        gen.manual_seed(self.seed * _NOISE_SEED_STRIDE + int(self.noise_step) + stream)
        return gen

    def _noise(self, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
        return torch.randn(shape, generator=self._generator(device), device=device, dtype=torch.float32)

    def spike_train(self, noise_std: float | None = None, add_noise: bool | None = None,
                    v_init: torch.Tensor | None = None) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Spikes [T, L, P, D]. Noise defaults to training mode (std = noise_std * noise_factor());
        plots may inject any noise_std. With v_init [L, P, D] the IF neurons start from that membrane
        potential and (spikes, final membrane potential) is returned."""
        U = self.current.float()  # the SFL always runs in float32 (CuPy kernel: fp32/fp16, never bf16)
        add_noise = self.training if add_noise is None else add_noise
        std = self.noise_std * (self.noise_factor() if add_noise else 1.0) if noise_std is None else noise_std
        steps = self.time_steps if self.filter is not None else 1  # the no-filter ablation binarises once
        currents = U.unsqueeze(0).expand(steps, *U.shape)  # [T, L, P, D]
        if add_noise and std > 0:
            currents = currents + std * self._noise(tuple(currents.shape), U.device)
        if self.filter is None:  # ablation: binarise each step's current directly, no integration
            return self.direct_spike(currents - self.v_threshold)
        if v_init is not None:
            return self.filter(currents, v_init=v_init, return_v=True)
        return self.filter(currents)

    def decode(self, binary: torch.Tensor) -> torch.Tensor:
        """b [L, P, D] -> tokens (scale, shift, center as configured)."""
        return decode_binary(binary, self.scale, self.shift, self.center)

    def forward(self) -> torch.Tensor:
        with torch.autocast(device_type=self.current.device.type, enabled=False):
            if self.persistent and not self.training and int(self.noise_step) > 0:
                return self.decode(self.last_bits)  # eval = the bits training last used
            carry = self.persistent and self.training
            with torch.no_grad() if self.gradient == "ste" else nullcontext():  # ste: no graph through the SFL
                if carry:  # a copy: the graph must not hold the buffer that is overwritten below
                    spikes, v_final = self.spike_train(v_init=self.membrane.clone())
                else:
                    spikes = self.spike_train()
                uniform = None
                if self.stochastic and self.training:
                    gen = self._generator(spikes.device, _SAMPLING_STREAM)
                    uniform = torch.rand(spikes.shape[1:], generator=gen, device=spikes.device, dtype=spikes.dtype)
                binary = self.discretize(spikes, uniform)  # [L, P, D] in {0, 1}
            rate = spikes.mean()
            if self.gradient == "ste":  # value + 0 exactly; gradient: identity to U
                straight = self.current - self.current.detach()
                binary, rate = binary + straight, rate + straight.mean()
            self.last_rate = rate
            if carry:
                with torch.no_grad():
                    self.membrane.copy_(v_final)
                    self.last_bits.copy_(self.discretize(spikes.detach()) if self.stochastic else binary.detach())
            if self.training:
                self.noise_step += 1
            return self.decode(binary)

    def rate_loss(self) -> torch.Tensor | None:
        """(mean firing rate - target)^2 of the last forward, or None without a target."""
        if self.target_rate is None or self.last_rate is None:
            return None
        return (self.last_rate - self.target_rate) ** 2
