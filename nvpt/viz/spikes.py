"""Figures of the Signal Filtering Layer (SFL) under injected noise.

`noise_responses(prompts, levels, seed)` runs a SpikePrompts' own SFL (SpikingJelly IF
neurons) and Spike Discretization Unit on the currents I_t = U + sigma * xi_t, t = 1..T, for
every noise std sigma. This is `SpikePrompts.spike_train(noise_std=sigma, add_noise=True)`,
except that the noise xi [T, L, P, D] is drawn once from `seed` and shared by all levels,
so the panels of a figure differ only in the noise amplitude. The plot functions only read
the returned tensors:

  plot_membrane_potential  potential of a few neurons over the T steps, one column per sigma
  plot_binary_prompts      binary prompts per layer and sigma with the flipped bits marked;
                           continuous VPT tokens under the same noise; SFL vs one-step binarisation
  plot_firing_rates        firing rate and sparsity per layer at sigma = 0 and the training noise
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Sequence

import matplotlib
import numpy as np
import torch
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator
from torch import Tensor

from nvpt.errors import NVPTError
from nvpt.viz import save_figure

SFL_COLOR, DIRECT_COLOR, VPT_COLOR = "tab:red", "tab:gray", "tab:blue"
# Heatmap categories of a binary prompt compared with its noise-free pattern.
BIT_COLORS = ListedColormap(["#f2f2f2", "#222222", "#ff9f1c", "#2ec4b6"])
BIT_LABELS = ("0, kept", "1, kept", "0 \u2192 1 flip", "1 \u2192 0 flip")


@dataclass
class NoiseResponse:
    """The SFL's response to one injected noise std; every tensor on the CPU, float32."""

    noise_std: float
    currents: Tensor  # I [T, L, P, D] = U + noise_std * xi
    spikes: Tensor  # S [T, L, P, D] in {0, 1}
    v_pre: Tensor  # H [T, L, P, D]: potential before the threshold test, H_t = v_{t-1} + I_t
    v_post: Tensor  # v [T, L, P, D]: potential after the reset (SpikingJelly's v_seq)
    binary: Tensor  # b [L, P, D] in {0, 1}: the SDU's binary prompt
    direct: Tensor  # [L, P, D]: I_1 >= boundary, one-step binarisation without the SFL
    v_threshold: float
    boundary: float  # v_threshold * rate_threshold: the constant current at which the bit flips

    @property
    def time_steps(self) -> int:
        return self.spikes.shape[0]


class Neuron(NamedTuple):
    layer: int
    token: int
    channel: int
    near: bool  # picked for its current close to the decision boundary


def check_noise_levels(levels: Sequence[float]) -> list[float]:
    """Noise stds as floats, refusing negative and non-finite ones."""
    out = [float(s) for s in levels]
    for s in out:
        if not math.isfinite(s) or s < 0:
            raise NVPTError(f"noise level {s!r} is invalid: noise stds must be finite and >= 0 (e.g. --noise 0 0.1 0.3)")
    if not out:
        raise NVPTError("no noise levels given (e.g. --noise 0 0.1 0.3)")
    return out


def pre_reset_potential(currents: Tensor, v_post: Tensor) -> Tensor:
    """H [T, ...] with H_t = v_{t-1} + I_t and v_0 = 0: the charge the IF neuron compares with
    the threshold. Re-integrated because SpikingJelly stores only the potential after the reset."""
    previous = torch.cat([torch.zeros_like(v_post[:1]), v_post[:-1]])
    return previous + currents


def noise_responses(prompts, noise_levels: Sequence[float], seed: int = 0) -> list[NoiseResponse]:
    """Run the SFL + SDU of a SpikePrompts on U + sigma * xi for each sigma in `noise_levels`."""
    if getattr(prompts, "filter", None) is None:
        raise NVPTError("spike figures need the Signal Filtering Layer of a trainable spike_nvpt model "
                        "(not spike.filter=none, not a deployed checkpoint)")
    levels = check_noise_levels(noise_levels)
    U = prompts.current.detach().float()  # [L, P, D]
    gen = torch.Generator().manual_seed(seed)
    xi = torch.randn((prompts.time_steps, *U.shape), generator=gen).to(U.device)  # on the CPU: same on any device
    v_threshold = float(prompts.v_threshold)
    boundary = v_threshold * float(prompts.discretize.rate_threshold)
    responses = []
    with torch.no_grad():
        for sigma in levels:
            currents = U.unsqueeze(0) + sigma * xi
            prompts.filter.record = True  # the membrane potentials are what this figure shows
            spikes = prompts.filter(currents)
            v_post = prompts.filter.last_v_seq
            if v_post is None:
                raise NVPTError("this SpikingJelly did not store the membrane potentials (IFNode store_v_seq); "
                                "use spikingjelly==0.0.0.0.14")
            responses.append(NoiseResponse(
                noise_std=sigma,
                currents=currents.cpu(),
                spikes=spikes.float().cpu(),
                v_pre=pre_reset_potential(currents, v_post).float().cpu(),
                v_post=v_post.float().cpu(),
                binary=prompts.discretize(spikes).float().cpu(),
                direct=(currents[0] >= boundary).float().cpu(),
                v_threshold=v_threshold,
                boundary=boundary,
            ))
    return responses


# ----------------------------------------------------------------------------- numbers the figures show

def flip_fraction(binary: Tensor, reference: Tensor) -> Tensor:
    """[L]: fraction of the P*D bits of each layer that differ from `reference` (normalised Hamming distance)."""
    return (binary != reference).float().flatten(1).mean(1)


def relative_l2_change(tokens: Tensor, noise: Tensor) -> Tensor:
    """[L]: ||(tokens + noise) - tokens|| / ||tokens|| per layer, for continuous [L, P, D] prompts."""
    moved = (tokens + noise) - tokens
    return moved.flatten(1).norm(dim=1) / tokens.flatten(1).norm(dim=1).clamp_min(1e-12)


def firing_rate(spikes: Tensor) -> Tensor:
    """[L]: spikes per neuron per time step, from spikes [T, L, P, D]."""
    return spikes.float().mean(dim=(0, 2, 3))


def sparsity(binary: Tensor) -> Tensor:
    """[L]: fraction of zero bits in the binary prompts [L, P, D]."""
    return (binary == 0).float().mean(dim=(1, 2))


def pick_neurons(current: Tensor, boundary: float, count: int, v_threshold: float = 1.0) -> list[Neuron]:
    """`count` SFL neurons of U [L, P, D]. Half are near the decision boundary, at currents closest
    to boundary + 0, +0.1, -0.1, +0.2, ... v_threshold, so noise flips some and the SFL saves others;
    the rest are alternately the largest and smallest U, far from it, which noise hardly moves."""
    flat = current.detach().float().flatten().cpu()
    count = max(1, min(count, flat.numel()))
    free = torch.ones_like(flat, dtype=torch.bool)
    chosen: list[tuple[int, bool]] = []
    for k in range((count + 1) // 2):
        offset = 0.1 * v_threshold * ((k + 1) // 2) * (1 if k % 2 else -1)
        distance = (flat - (boundary + offset)).abs().masked_fill(~free, float("inf"))
        i = int(distance.argmin())
        free[i] = False
        chosen.append((i, True))
    for k in range(count - len(chosen)):
        largest = k % 2 == 0
        values = flat.masked_fill(~free, float("-inf") if largest else float("inf"))
        i = int(values.argmax() if largest else values.argmin())
        free[i] = False
        chosen.append((i, False))
    picked = []
    for i, near in chosen:
        layer, token, channel = (int(x) for x in torch.unravel_index(torch.tensor(i), current.shape))
        picked.append(Neuron(layer, token, channel, near))
    return picked


# ----------------------------------------------------------------------------- figures

def _check_reference(reference: NoiseResponse) -> None:
    if reference.noise_std != 0:
        raise NVPTError(f"the reference response must be the noise-free one (sigma 0), got sigma {reference.noise_std:g}")


def _title(fig: Figure, main: str, subtitle: str | None) -> None:
    fig.suptitle(main if not subtitle else f"{main}\n{subtitle}", fontsize=12)


def plot_membrane_potential(responses: Sequence[NoiseResponse], reference: NoiseResponse, neurons: Sequence[Neuron],
                            out_prefix: str | Path, title: str | None = None) -> list[Path]:
    """Grid of membrane potential traces: a row per neuron, a column per noise level.

    Each trace rises from v_{t-1} to the pre-reset potential H_t (re-integrated from the
    currents) and, when the neuron fires, drops to the stored post-reset v_t; spikes are
    stars. Panels whose bit differs from `reference` (the noise-free response) have a red title.
    """
    _check_reference(reference)
    T = responses[0].time_steps
    v_threshold, boundary = responses[0].v_threshold, responses[0].boundary
    rows, cols = len(neurons), len(responses)
    fig = Figure(figsize=(2.5 * cols + 1.2, 1.75 * rows + 1.3), layout="constrained")
    axes = fig.subplots(rows, cols, sharex=True, sharey=True, squeeze=False)
    steps = np.arange(1, T + 1)
    for row, neuron in enumerate(neurons):
        color = matplotlib.colormaps["tab10"](row % 10)
        where = (slice(None), neuron.layer, neuron.token, neuron.channel)
        for col, r in enumerate(responses):
            ax = axes[row, col]
            H, v, S = r.v_pre[where].numpy(), r.v_post[where].numpy(), r.spikes[where].numpy()
            xs, ys = [0.0], [0.0]
            for t in range(T):
                xs += [t + 1, t + 1]
                ys += [float(H[t]), float(v[t])]
            ax.plot(xs, ys, color=color, lw=1.5, ls="-" if neuron.near else "--")
            fired = S > 0
            ax.scatter(steps[fired], H[fired], marker="*", s=80, color=color, edgecolor="black", linewidth=0.5, zorder=3)
            ax.axhline(v_threshold, color="black", ls=":", lw=1)
            ax.axhline(0.0, color="0.8", lw=0.6, zorder=0)
            bit = int(r.binary[neuron.layer, neuron.token, neuron.channel])
            flipped = bit != int(reference.binary[neuron.layer, neuron.token, neuron.channel])
            ax.set_title(f"{int(S.sum())}/{T} spikes \u2192 bit {bit}" + (" (flipped)" if flipped else ""),
                         fontsize=8.5, color="tab:red" if flipped else "black")
            if row == 0:
                ax.annotate(f"noise \u03c3 = {r.noise_std:g}", xy=(0.5, 1.28), xycoords="axes fraction",
                            ha="center", fontsize=10.5, fontweight="bold")
            if row == rows - 1:
                ax.set_xlabel("time step t")
            ax.set_xticks(range(T + 1))
            ax.grid(alpha=0.25)
        U = float(reference.currents[0, neuron.layer, neuron.token, neuron.channel])  # noise-free: I_t = U
        axes[row, 0].set_ylabel(f"L{neuron.layer} tok{neuron.token} ch{neuron.channel}\n"
                                f"U = {U:.3f} ({U - boundary:+.1g})", fontsize=8.5)
    handles = [
        Line2D([], [], color="0.3", lw=1.5, label="potential: rises to H_t = v_{t-1} + I_t, drops to v_t on reset"),
        Line2D([], [], color="black", ls=":", lw=1, label=f"threshold v_th = {v_threshold:g}"),
        Line2D([], [], marker="*", ls="", color="0.5", markeredgecolor="black", markersize=9, label="spike"),
        Line2D([], [], color="0.3", ls="--", lw=1.5, label="dashed: neuron far from the boundary"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncol=4, fontsize=8.5, frameon=False)
    fig.supylabel("membrane potential (current units) of neuron layer/token/channel; U (U \u2212 boundary)",
                  fontsize=9.5)
    _title(fig, f"SFL membrane potential over T = {T} steps (current units; noise-free decision boundary "
                f"U = {boundary:g})", title)
    return save_figure(fig, out_prefix)


def _categories(binary: Tensor, reference: Tensor) -> Tensor:
    """0/1 kept, 2 = flipped 0->1, 3 = flipped 1->0 (see BIT_LABELS)."""
    flipped = binary != reference
    return torch.where(flipped, 2 + reference, binary).long()


def _layer_subset(num_layers: int, max_layers: int) -> list[int]:
    if num_layers <= max_layers:
        return list(range(num_layers))
    return sorted({round(i * (num_layers - 1) / (max_layers - 1)) for i in range(max_layers)})


def spike_tokens(binary: Tensor, scale: Tensor | None, center: bool) -> Tensor:
    """Prompt tokens [L, P, D] of binary prompts: scale * b, or scale * (2b - 1) when centred."""
    tokens = 2 * binary - 1 if center else binary
    return tokens if scale is None else tokens * scale.detach().float().cpu()


def plot_binary_prompts(responses: Sequence[NoiseResponse], reference: NoiseResponse, vpt_tokens: Tensor,
                        vpt_source: str, out_prefix: str | Path, title: str | None = None,
                        spike_scale: Tensor | None = None, center: bool = False,
                        max_layers: int = 4, max_channels: int = 64) -> list[Path]:
    """Binary prompts per layer (rows) and noise level (columns) with flipped bits coloured, and below:
    flipped bits per layer; the relative L2 change of continuous VPT tokens [L, P, D] under the same
    noise (xi_1, the first step's) next to that of the Spike-NVPT tokens (`spike_scale` [L, 1, D] or
    [L, 1, 1] times the binary prompt, see `spike_tokens`); the SFL's flip fraction against
    one-step binarisation."""
    _check_reference(reference)
    L, P, D = reference.binary.shape
    if tuple(vpt_tokens.shape) != (L, P, D):
        raise NVPTError(f"VPT tokens have shape {tuple(vpt_tokens.shape)}, the spike prompts {(L, P, D)}: they must match")
    layers = _layer_subset(L, max_layers)
    channels = min(D, max_channels)
    sigmas = [r.noise_std for r in responses]
    sfl_flips = torch.stack([flip_fraction(r.binary, reference.binary) for r in responses]).numpy()  # [levels, L]
    direct_flips = torch.stack([flip_fraction(r.direct, reference.direct) for r in responses]).mean(1).numpy()
    U = reference.currents[0]
    vpt_change = torch.stack([relative_l2_change(vpt_tokens.float().cpu(), r.currents[0] - U) for r in responses]).numpy()
    clean_tokens = spike_tokens(reference.binary, spike_scale, center)
    spike_change = torch.stack([relative_l2_change(clean_tokens, spike_tokens(r.binary, spike_scale, center) - clean_tokens)
                                for r in responses]).mean(1).numpy()

    row_height = 1.25 * min(max(1.0, P / 8), 3.0)  # inches per heatmap row: taller for long prompts, capped
    fig = Figure(figsize=(max(11.0, 2.6 * len(responses) + 1.5), row_height * len(layers) + 4.6), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[row_height * len(layers) + 0.6, 3.3])
    axes = top.subplots(len(layers), len(responses), sharex=True, sharey=True, squeeze=False)
    image = None
    for row, layer in enumerate(layers):
        for col, r in enumerate(responses):
            ax = axes[row, col]
            cats = _categories(r.binary[layer, :, :channels], reference.binary[layer, :, :channels])
            image = ax.imshow(cats.numpy(), cmap=BIT_COLORS, vmin=-0.5, vmax=3.5, aspect="auto", interpolation="nearest")
            ax.set_title(f"layer {layer}, \u03c3 = {r.noise_std:g}: {100 * float(sfl_flips[col, layer]):.1f}% flipped",
                         fontsize=8.5)
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
            if col == 0:
                ax.set_ylabel("prompt token")
            if row == len(layers) - 1:
                ax.set_xlabel(f"channel (first {channels} of {D})" if channels < D else "channel")
    bar = top.colorbar(image, ax=axes, ticks=range(4), shrink=0.9, fraction=0.03, pad=0.01)
    bar.ax.set_yticklabels(BIT_LABELS, fontsize=8)
    bar.set_label("bit vs noise-free prompt")
    shown = "" if len(layers) == L else f" (layers {', '.join(map(str, layers))} of {L})"
    top.suptitle(f"Binary prompts under noise injected into the SFL current{shown}; % = Hamming distance "
                 "to the noise-free pattern over all channels", fontsize=10)

    ax_bits, ax_vpt, ax_cmp = bottom.subplots(1, 3)
    shades = matplotlib.colormaps["viridis"]
    for layer in range(L):
        tint = shades(layer / max(1, L - 1))
        ax_bits.plot(sigmas, sfl_flips[:, layer], color=tint, lw=0.9, alpha=0.7)
        ax_vpt.plot(sigmas, vpt_change[:, layer], color=tint, lw=0.9, alpha=0.7)
    ax_bits.plot(sigmas, sfl_flips.mean(1), color=SFL_COLOR, lw=2.2, marker="o", label="mean over layers")
    ax_vpt.plot(sigmas, vpt_change.mean(1), color=VPT_COLOR, lw=2.2, marker="o", label="VPT-deep, mean over layers")
    ax_vpt.plot(sigmas, spike_change, color=SFL_COLOR, lw=2.2, marker="o", label="Spike-NVPT tokens, mean over layers")
    ax_bits.set_title("Spike-NVPT: binary prompt bits flipped\n(thin lines: layers, dark \u2192 light = first \u2192 last)",
                      fontsize=9)
    ax_bits.set_ylabel("fraction of flipped bits")
    ax_vpt.set_title(f"prompt tokens under the same noise (thin: VPT layers)\nVPT: {vpt_source}", fontsize=9)
    ax_vpt.set_ylabel("relative L2 change \u2016\u0394\u2016 / \u2016tokens\u2016")
    T = reference.time_steps
    ax_cmp.plot(sigmas, sfl_flips.mean(1), color=SFL_COLOR, lw=2.2, marker="o", label=f"SFL, T = {T} steps + SDU")
    ax_cmp.plot(sigmas, direct_flips, color=DIRECT_COLOR, lw=2.2, ls="--", marker="s",
                label=f"direct: 1 step, I \u2265 {reference.boundary:g}")
    ax_cmp.set_title("filtering: SFL vs one-step binarisation\nof the same noisy current", fontsize=9)
    ax_cmp.set_ylabel("fraction of flipped bits")
    for ax in (ax_bits, ax_vpt, ax_cmp):
        ax.set_xlabel("injected noise std \u03c3 (current units)")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
    _title(fig, "Binary prompts under noise", title)
    return save_figure(fig, out_prefix)


def plot_firing_rates(clean: NoiseResponse, noisy: NoiseResponse, out_prefix: str | Path, title: str | None = None,
                      target_rate: float | None = None) -> list[Path]:
    """Per layer: firing rate (spikes per neuron per step) and sparsity (share of 0 bits), at no
    noise (`clean`) and the training noise (`noisy`), plus the distribution of per-neuron rates."""
    L = clean.binary.shape[0]
    T = clean.time_steps
    x = np.arange(L)
    width = 0.38
    fig = Figure(figsize=(13.5, 4.2), layout="constrained")
    ax_rate, ax_sparse, ax_hist = fig.subplots(1, 3)
    cases = ((clean, "tab:green", f"noise \u03c3 = {clean.noise_std:g}"),
             (noisy, "tab:purple", f"noise \u03c3 = {noisy.noise_std:g} (training)"))
    for k, (r, color, label) in enumerate(cases):
        offset = (k - 0.5) * width
        ax_rate.bar(x + offset, firing_rate(r.spikes).numpy(), width, color=color, label=label)
        ax_sparse.bar(x + offset, sparsity(r.binary).numpy(), width, color=color, label=label)
        per_neuron = r.spikes.mean(0).flatten()  # k / T per neuron
        counts = torch.bincount((per_neuron * T).round().long(), minlength=T + 1).float() / per_neuron.numel()
        ax_hist.bar(np.arange(T + 1) / T + offset / T, counts.numpy(), width / T, color=color, label=label)
    if target_rate is not None:
        ax_rate.axhline(target_rate, color="black", ls=":", label=f"target rate {target_rate:g}")
    rate_threshold = clean.boundary / clean.v_threshold
    lowest_one = math.ceil(rate_threshold * T - 1e-6) / T  # the smallest rate k/T the SDU turns into a 1
    ax_hist.axvspan(lowest_one - 0.5 / T, 1 + 0.5 / T, color="gold", alpha=0.15, lw=0, zorder=0,
                    label=f"rate \u2265 {rate_threshold:g}: bit = 1")
    ax_rate.set_title("mean firing rate per layer")
    ax_rate.set_ylabel("spikes per neuron per time step")
    ax_sparse.set_title("sparsity of the binary prompts")
    ax_sparse.set_ylabel("fraction of 0 bits")
    for ax in (ax_rate, ax_sparse):
        ax.set_xlabel("layer")
        ax.set_xticks(x.tolist(), [str(i) for i in range(L)])
        ax.set_ylim(0, 1.05)
    ax_hist.set_title(f"per-neuron firing rates (all layers, T = {T})")
    ax_hist.set_xlabel("firing rate (spikes / T)")
    ax_hist.set_ylabel("fraction of neurons")
    ax_hist.set_xticks([k / T for k in range(T + 1)], [f"{k}/{T}" for k in range(T + 1)])
    ax_hist.set_xlim(-0.5 / T - 0.05, 1 + 0.5 / T + 0.05)
    ax_hist.set_ylim(0, ax_hist.get_ylim()[1] * 1.3)  # room for the legend
    for ax in (ax_rate, ax_sparse, ax_hist):
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=8, loc="upper left")
    _title(fig, "Firing rate and sparsity of the Signal Filtering Layer", title)
    return save_figure(fig, out_prefix)
