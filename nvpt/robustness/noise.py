"""Noise family (ImageNet-C), per element of the image x in [0, 1], c = the severity's constant:

    gaussian_noise  x + N(0, c^2)                 c = standard deviation
    shot_noise      Poisson(x * c) / c            c = photons per unit intensity
    impulse_noise   salt & pepper, amount c       each element independently: 1 with
                                                  prob c/2, 0 with prob c/2, else x
    speckle_noise   x + x * N(0, c^2)             c = std of the multiplicative noise
    gaussian        x + N(0, sigma^2)             explicit sigma, no severity

Impulse noise follows skimage `random_noise(mode='s&p', salt_vs_pepper=0.5)`: every channel
element is flipped independently. All draws come from the counter-based streams of
nvpt/robustness/rng.py, on the images' device (stream 0 of each set).
"""
from __future__ import annotations

from torch import Tensor


def _draw_normal(x: Tensor, streams, c, table) -> dict:
    return {"z": streams.normal(0, x.shape[1:])}


def _draw_uniform(x: Tensor, streams, c, table) -> dict:
    return {"u": streams.uniform(0, x.shape[1:])}


def _draw_poisson(x: Tensor, streams, c, table) -> dict:
    return {"counts": streams.poisson(0, x * c)}


def gaussian_noise(x: Tensor, c: float, draws: dict, table: str) -> Tensor:
    return x + draws["z"] * c


def speckle_noise(x: Tensor, c: float, draws: dict, table: str) -> Tensor:
    # separate ops keep rounding device-independent
    return x + x * (draws["z"] * c)


def shot_noise(x: Tensor, c: float, draws: dict, table: str) -> Tensor:
    return draws["counts"] / c


def impulse_noise(x: Tensor, c: float, draws: dict, table: str) -> Tensor:
    u = draws["u"]
    # u < c flips the element; the lower half of that range is salt, the upper pepper.
    return x.masked_fill(u < c, 0.0).masked_fill(u < c / 2, 1.0)


CORRUPTIONS = {  # name -> (draw(x, streams, c, table) -> dict or None, apply(x, c, draws, table))
    "gaussian_noise": (_draw_normal, gaussian_noise),
    "shot_noise": (_draw_poisson, shot_noise),
    "impulse_noise": (_draw_uniform, impulse_noise),
    "speckle_noise": (_draw_normal, speckle_noise),
    "gaussian": (_draw_normal, gaussian_noise),
}
