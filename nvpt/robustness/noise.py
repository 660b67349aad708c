"""Noise family (ImageNet-C), per element of the image x in [0, 1], c = the severity's constant:

    gaussian_noise  x + N(0, c^2)                 c = standard deviation
    shot_noise      Poisson(x * c) / c            c = photons per unit intensity
    impulse_noise   salt & pepper, amount c       each element independently: 1 with
                                                  prob c/2, 0 with prob c/2, else x
    speckle_noise   x + x * N(0, c^2)             c = std of the multiplicative noise
    gaussian        x + N(0, sigma^2)             explicit sigma, no severity

Impulse noise follows skimage `random_noise(mode='s&p', salt_vs_pepper=0.5)`: every channel
element is flipped independently. The arithmetic after the (CPU) draws is elementwise, one
rounding per op, so CPU and GPU runs see the same images.
"""
from __future__ import annotations

import torch
from torch import Tensor


def _per_sample(gens, fn) -> Tensor:
    return torch.stack([fn(g) for g in gens])


def _draw_normal(x: Tensor, gens, c, table) -> dict:
    return {"z": _per_sample(gens, lambda g: torch.randn(x.shape[1:], generator=g))}


def _draw_uniform(x: Tensor, gens, c, table) -> dict:
    return {"u": _per_sample(gens, lambda g: torch.rand(x.shape[1:], generator=g))}


def _draw_poisson(x: Tensor, gens, c, table) -> dict:
    # torch.poisson draws from the rate itself, so the rate goes to the CPU generator.
    rate = x.cpu() * c
    return {"counts": torch.stack([torch.poisson(r, generator=g) for r, g in zip(rate, gens)])}


def gaussian_noise(x: Tensor, c: float, draws: dict, table: str) -> Tensor:
    return x + draws["z"].to(x.device) * c


def speckle_noise(x: Tensor, c: float, draws: dict, table: str) -> Tensor:
    # separate ops keep rounding device-independent
    return x + x * (draws["z"].to(x.device) * c)


def shot_noise(x: Tensor, c: float, draws: dict, table: str) -> Tensor:
    return draws["counts"].to(x.device) / c


def impulse_noise(x: Tensor, c: float, draws: dict, table: str) -> Tensor:
    u = draws["u"].to(x.device)
    # u < c flips the element; the lower half of that range is salt, the upper pepper.
    return x.masked_fill(u < c, 0.0).masked_fill(u < c / 2, 1.0)


CORRUPTIONS = {  # name -> (draw(x, generators, c, table) -> dict or None, apply(x, c, draws, table))
    "gaussian_noise": (_draw_normal, gaussian_noise),
    "shot_noise": (_draw_poisson, shot_noise),
    "impulse_noise": (_draw_uniform, impulse_noise),
    "speckle_noise": (_draw_normal, speckle_noise),
    "gaussian": (_draw_normal, gaussian_noise),
}
