"""Blur family (ImageNet-C), batched, as the `imagecorruptions` package computes it:

    defocus_blur   correlation with a disk of radius r, anti-aliased by a small Gaussian
                   (cv2.GaussianBlur), borders reflected (BORDER_REFLECT_101)
    glass_blur     Gaussian blur, quantised to 8 bits, local pixel swaps (each pixel with a
                   random neighbour up to d pixels up/left, scanned from the bottom right,
                   `iterations` times), Gaussian blur again
    motion_blur    mean of the image shifted along a random angle in [-45, 45) degrees,
                   weighted by a one-sided Gaussian (imagecorruptions' replacement of
                   ImageMagick's motion blur)
    zoom_blur      mean of the image and its centre zoomed by each factor
    gaussian_blur  Gaussian blur (skimage.filters.gaussian: truncate 4, borders replicated)

Each function takes x [B, 3, H, W] in [0, 1] and the severity's constant; the output is clipped
by `corrupt`.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

from nvpt.robustness.imageops import clipped_zoom, correlate1d, filter2d, gaussian_filter, motion_blur as shift_blur


@lru_cache(maxsize=32)
def disk_kernel(radius: float, alias_blur: float) -> Tensor:
    """imagecorruptions' `disk`: a normalised disk (on a 17x17 grid up to radius 8), blurred by
    cv2.GaussianBlur with ksize 3 (5 beyond radius 8) and sigma `alias_blur`; zero margins
    dropped (they add nothing). float32, as OpenCV computes it."""
    half = 8 if radius <= 8 else int(radius)
    grid = torch.arange(-half, half + 1, dtype=torch.float32)
    yy, xx = torch.meshgrid(grid, grid, indexing="ij")
    disk = ((xx ** 2 + yy ** 2) <= radius ** 2).float()
    disk = disk / disk.sum()
    ksize = 3 if radius <= 8 else 5
    t = torch.arange(ksize, dtype=torch.float64) - (ksize - 1) * 0.5
    g = torch.exp(-0.5 / (alias_blur * alias_blur) * t * t).float()
    g = (g.double() * (1.0 / g.double().sum())).float()
    k = correlate1d(correlate1d(disk, g, 1, "reflect101"), g, 0, "reflect101")
    rows = k.abs().sum(1).nonzero()
    m = min(int(rows.min()), half * 2 - int(rows.max()))  # symmetric margin of zero rows (and columns)
    return k[m:k.shape[0] - m, m:k.shape[1] - m]


def defocus_blur(x: Tensor, c, draws, table: str) -> Tensor:
    radius, alias = c
    return filter2d(x.double(), disk_kernel(float(radius), float(alias)).to(x.device))


def gaussian_blur(x: Tensor, c, draws, table: str) -> Tensor:
    return gaussian_filter(x.double(), float(c))


def _swap_positions(n: int, d: int) -> range:
    return range(n - d, d, -1)  # rows (columns) visited, bottom (right) first


def _draw_glass(x: Tensor, gens, c, table: str) -> dict:
    _, d, iterations = c
    H, W = x.shape[-2:]
    # one uniform pair per pixel and round (whether visited or not): numpy's randint(-d, d) as
    # (dx, dy) in [-d, d - 1]; the layout is the same at every severity
    u = torch.stack([torch.stack([torch.rand(H, W, 2, dtype=torch.float64, generator=g) for _ in range(iterations)])
                     for g in gens])
    return {"shifts": (torch.floor(u * (2 * d)) - d).to(torch.int64)}  # [B, iterations, H, W, 2]


def glass_blur(x: Tensor, c, draws: dict, table: str) -> Tensor:
    sigma, d, iterations = c
    B, C, H, W = x.shape
    q8 = torch.floor(gaussian_filter(x.double(), sigma) * 255)  # np.uint8(...) truncates
    flat = q8.reshape(B, C, H * W).clone()
    visits = [(h, w) for h in _swap_positions(H, d) for w in _swap_positions(W, d)]
    if not visits:
        return gaussian_filter(q8 / 255.0, sigma)
    hs, ws = torch.tensor(visits).unbind(1)
    shifts = draws["shifts"][:, :, hs, ws]  # [B, iterations, visits, (dx, dy)]
    pos = hs * W + ws
    partner = (pos[None, None] + shifts[..., 1] * W + shifts[..., 0]).numpy()  # [B, iterations, visits]
    # the swaps are sequential (a pixel can move again later in the scan): a loop over the scan,
    # vectorised over the batch, in numpy on the CPU (cheaper per step than torch)
    pixels = flat.permute(0, 2, 1).contiguous().cpu().numpy()  # [B, H*W, C]
    rows = np.arange(B)
    for it in range(iterations):
        for k, p in enumerate(pos.tolist()):
            q = partner[:, it, k]
            mine = pixels[:, p].copy()
            pixels[:, p] = pixels[rows, q]
            pixels[rows, q] = mine
    flat = torch.from_numpy(pixels).permute(0, 2, 1).to(x.device)
    return gaussian_filter(flat.reshape(B, C, H, W) / 255.0, sigma)


def _draw_angle(low: float, high: float):
    def draw(x: Tensor, gens, c, table: str) -> dict:
        u = torch.stack([torch.rand((), dtype=torch.float64, generator=g) for g in gens])
        return {"angle": low + (high - low) * u}
    return draw


def motion_blur(x: Tensor, c, draws: dict, table: str) -> Tensor:
    radius, sigma = c
    return shift_blur(x, int(radius), float(sigma), draws["angle"])


def zoom_blur(x: Tensor, c, draws, table: str) -> Tensor:
    out = torch.zeros_like(x)
    for factor in c:  # each zoomed copy is stored in float32 and summed, as the reference does
        out += clipped_zoom(x, factor).float()
    return (x + out) / (len(c) + 1)


CORRUPTIONS = {  # name -> (draw(x, generators, c, table) -> dict or None, apply(x, c, draws, table))
    "defocus_blur": (None, defocus_blur),
    "glass_blur": (_draw_glass, glass_blur),
    "motion_blur": (_draw_angle(-45.0, 45.0), motion_blur),
    "zoom_blur": (None, zoom_blur),
    "gaussian_blur": (None, gaussian_blur),
}
