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

from nvpt.robustness.imageops import clipped_zoom, filter2d, gaussian_filter, motion_blur as shift_blur


@lru_cache(maxsize=32)
def disk_kernel(radius: float, alias_blur: float) -> tuple[tuple[float, ...], ...]:
    """imagecorruptions' `disk`: a normalised disk (on a 17x17 grid up to radius 8), blurred by
    cv2.GaussianBlur with ksize 3 (5 beyond radius 8) and sigma `alias_blur`; zero margins
    dropped (they add nothing). float32 values, as OpenCV computes them; a host constant (numpy),
    turned into a tensor on the images' device where it is used."""
    half = 8 if radius <= 8 else int(radius)
    grid = np.arange(-half, half + 1, dtype=np.float32)
    yy, xx = np.meshgrid(grid, grid, indexing="ij")
    disk = ((xx ** 2 + yy ** 2) <= radius ** 2).astype(np.float32)
    disk = disk / disk.sum(dtype=np.float32)
    ksize = 3 if radius <= 8 else 5
    t = np.arange(ksize, dtype=np.float64) - (ksize - 1) * 0.5
    g = np.exp(-0.5 / (alias_blur * alias_blur) * t * t).astype(np.float32)
    g = (g.astype(np.float64) * (1.0 / g.astype(np.float64).sum())).astype(np.float32)
    r = ksize // 2
    for axis in (1, 0):  # cv2's separable filter, BORDER_REFLECT_101 (numpy's "reflect")
        pad = [(0, 0), (0, 0)]
        pad[axis] = (r, r)
        p = np.pad(disk, pad, mode="reflect")
        n = disk.shape[axis]
        acc = np.take(p, range(0, n), axis=axis) * g[0]
        for k in range(1, ksize):
            acc = acc + np.take(p, range(k, k + n), axis=axis) * g[k]
        disk = acc.astype(np.float32)
    rows = np.nonzero(np.abs(disk).sum(1))[0]
    m = min(int(rows.min()), half * 2 - int(rows.max()))  # symmetric margin of zero rows (and columns)
    return tuple(tuple(float(v) for v in row) for row in disk[m:disk.shape[0] - m, m:disk.shape[1] - m])


def defocus_blur(x: Tensor, c, draws, table: str) -> Tensor:
    radius, alias = c
    kernel = torch.tensor(disk_kernel(float(radius), float(alias)), dtype=torch.float32, device=x.device)
    return filter2d(x.double(), kernel)


def gaussian_blur(x: Tensor, c, draws, table: str) -> Tensor:
    return gaussian_filter(x.double(), float(c))


def _draw_glass(x: Tensor, streams, c, table: str) -> dict:
    _, d, iterations = c
    H, W = x.shape[-2:]
    # one uniform pair per pixel and round (whether visited or not): numpy's randint(-d, d) as
    # (dx, dy) in [-d, d - 1]; the layout is the same at every severity
    u = streams.uniform(0, (iterations, H, W, 2), torch.float64)
    return {"shifts": (torch.floor(u * (2 * d)) - d).to(torch.int64)}  # [B, iterations, H, W, 2]


def swap_waves(H: int, W: int, d: int) -> list[tuple[int, int]]:
    """The reference's scan of pixel swaps (rows from H - d down to d + 1, in each the columns
    from W - d down to d + 1; each swaps with a pixel up to d away) in waves of swaps that touch
    disjoint pixels. Swap (r, c) (r-th row and c-th column of the scan) goes to wave 2 d r + c:
    two swaps that can share a pixel are less than 2 d rows and columns apart, and keep their
    order; two swaps of one wave are 2 d columns apart or more. Returns (start, stop) of each
    wave in the scan sorted by wave (`swap_order`)."""
    nr, nc = max(H - 2 * d, 0), max(W - 2 * d, 0)
    if not nr or not nc:
        return []
    a = 2 * d
    counts = [0] * (a * (nr - 1) + nc)
    for r in range(nr):
        for t in range(a * r, a * r + nc):
            counts[t] += 1
    out, start = [], 0
    for n in counts:
        out.append((start, start + n))
        start += n
    return out


def swap_order(H: int, W: int, d: int, device) -> tuple[Tensor, Tensor]:
    """Rows and columns (image coordinates) of the scan's swaps, sorted by wave (stable)."""
    nr, nc = H - 2 * d, W - 2 * d
    r = torch.arange(nr, device=device)[:, None].expand(nr, nc)
    col = torch.arange(nc, device=device)[None].expand(nr, nc)
    order = torch.argsort((2 * d * r + col).flatten(), stable=True)
    return (H - d - r.flatten())[order], (W - d - col.flatten())[order]


def glass_blur(x: Tensor, c, draws: dict, table: str) -> Tensor:
    sigma, d, iterations = c
    B, C, H, W = x.shape
    q8 = torch.floor(gaussian_filter(x.double(), sigma) * 255)  # np.uint8(...) truncates
    waves = swap_waves(H, W, d)
    if not waves:
        return gaussian_filter(q8 / 255.0, sigma)
    hs, ws = swap_order(H, W, d, x.device)
    pos = hs * W + ws  # [visits]
    shifts = draws["shifts"][:, :, hs, ws]  # [B, iterations, visits, (dx, dy)]
    partner = pos[None, None] + shifts[..., 1] * W + shifts[..., 0]  # [B, iterations, visits]
    # the swaps are sequential (a pixel can move again later in the scan), but those of a wave
    # touch disjoint pixels: one gather/scatter per wave permutes the source index of each pixel
    source = torch.arange(H * W, device=x.device).expand(B, H * W).clone()
    for it in range(iterations):
        for a, b in waves:
            p = pos[a:b].expand(B, b - a)
            q = partner[:, it, a:b]
            mine, theirs = source.gather(1, p), source.gather(1, q)
            source.scatter_(1, p, theirs)
            source.scatter_(1, q, mine)
    flat = q8.reshape(B, C, H * W).gather(2, source[:, None].expand(B, C, H * W))
    return gaussian_filter(flat.reshape(B, C, H, W) / 255.0, sigma)


def _draw_angle(low: float, high: float):
    def draw(x: Tensor, streams, c, table: str) -> dict:
        return {"angle": low + (high - low) * streams.uniform(0, (), torch.float64)}
    return draw


def motion_blur(x: Tensor, c, draws: dict, table: str) -> Tensor:
    radius, sigma = c
    return shift_blur(x, int(radius), float(sigma), draws["angle"])


def zoom_blur(x: Tensor, c, draws, table: str) -> Tensor:
    out = torch.zeros_like(x)
    for factor in c:  # each zoomed copy is stored in float32 and summed, as the reference does
        out += clipped_zoom(x, factor).float()
    return (x + out) / (len(c) + 1)


CORRUPTIONS = {  # name -> (draw(x, streams, c, table) -> dict or None, apply(x, c, draws, table))
    "defocus_blur": (None, defocus_blur),
    "glass_blur": (_draw_glass, glass_blur),
    "motion_blur": (_draw_angle(-45.0, 45.0), motion_blur),
    "zoom_blur": (None, zoom_blur),
    "gaussian_blur": (None, gaussian_blur),
}
