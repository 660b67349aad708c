"""Weather family (ImageNet-C), batched, as the `imagecorruptions` package computes it:

    snow     a Gaussian random layer, zoomed, thresholded and motion-blurred along a random
             angle in [-135, -45) degrees, added to a brightened image (and rotated by 180
             degrees, added again)
    frost    image * a + frost photograph * b, a random crop of one of five frost photographs
             (nvpt/assets/frost, from imagecorruptions, Apache-2.0)
    fog      a plasma fractal (diamond-square) added, contrast reduced to keep the maximum
    spatter  a smoothed Gaussian random layer, thresholded; water (severities with mud = 0):
             its edges (Canny), distance to them, equalised, embossed, in pale turquoise;
             mud: the thresholded blobs, smoothed, in brown, covering the image

Draws come from the counter-based streams of nvpt/robustness/rng.py on the images' device.
Frost photographs are scaled as in the reference: "imagenet" by 1.1 beyond just covering the
image (ImageNet-C: unscaled), "cifar" to one fifth (CIFAR-10-C), unless the image is larger than
that, then as "imagenet". Each function takes x [B, 3, H, W] in [0, 1].
"""
from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from nvpt.robustness.imageops import (
    box3,
    canny,
    clipped_zoom,
    distance_to_edges,
    equalize_hist,
    filter2d,
    gaussian_filter,
    motion_blur,
    rgb_to_gray,
)

FROST_DIR = Path(__file__).resolve().parent.parent / "assets" / "frost"
FROST_FILES = ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg")  # ImageNet-C draws from these 5


# ----------------------------------------------------------------------------- snow

def _draw_snow(x: Tensor, streams, c, table: str) -> dict:
    # per sample: the layer's standard normals (stream 0), the blur angle (stream 1)
    return {"z": streams.normal(0, x.shape[-2:], torch.float64),
            "angle": -135.0 + 90.0 * streams.uniform(1, (), torch.float64)}


def snow(x: Tensor, c, draws: dict, table: str) -> Tensor:
    mean, std, zoom, threshold, radius, sigma, keep = c
    layer = mean + std * draws["z"]
    layer = clipped_zoom(layer, zoom, crop=False)  # blurred at its zoomed size, cropped after
    layer = torch.where(layer < threshold, torch.zeros_like(layer), layer).clamp(0, 1)
    layer = motion_blur(layer, int(radius), float(sigma), draws["angle"])
    layer = (torch.round(layer * 255) / 255.0)[:, None, :x.shape[-2], :x.shape[-1]]  # stored in 8 bits
    x = x.float()
    brighter = torch.maximum(x, rgb_to_gray(x) * 1.5 + 0.5)
    x = keep * x + (1 - keep) * brighter
    return x.double() + layer + torch.flip(layer, dims=(-2, -1))


# ----------------------------------------------------------------------------- frost

@lru_cache(maxsize=1)
def frost_images() -> tuple[np.ndarray, ...]:
    """The five frost photographs as uint8 RGB arrays [3, h, w] (numpy: host constants, cached
    outside torch, turned into tensors on the images' device by frost_layers)."""
    from PIL import Image

    out = []
    for name in FROST_FILES:
        with Image.open(FROST_DIR / name) as im:
            out.append(np.ascontiguousarray(np.asarray(im.convert("RGB")).transpose(2, 0, 1)))
    return tuple(out)


def frost_layers(table: str, height: int, width: int, device=None) -> tuple[Tensor, ...]:
    """The frost photographs scaled for images of height x width (uint8 values in float32), on `device`."""
    layers = []
    for img in frost_images():
        h, w = img.shape[-2:]
        img = torch.as_tensor(img).to(device)
        if table == "cifar" and round(h * 0.2) >= height and round(w * 0.2) >= width:
            # cv2.resize(fx=fy=0.2, INTER_LINEAR) samples every 5th pixel, starting at the 3rd
            layers.append(img[:, 2::5, 2::5][:, :round(h * 0.2), :round(w * 0.2)].float())
            continue
        scale = 1.0
        if h < height and w >= width:
            scale = height / h
        elif h >= height and w < width:
            scale = width / w
        elif h < height and w < width:
            scale = max(height / h, width / w)
        scale *= 1.1
        size = (int(math.ceil(h * scale)), int(math.ceil(w * scale)))
        # cv2.resize(INTER_CUBIC) of 8-bit data: Keys cubic (a = -0.75), half-pixel centres, rounded
        big = F.interpolate(img[None].float(), size=size, mode="bicubic", align_corners=False)[0]
        layers.append(big.round().clamp(0, 255))
    return tuple(layers)


_FROST_CACHE: dict = {}


def frost_stack(table: str, height: int, width: int, like: Tensor) -> tuple[Tensor, Tensor]:
    """The frost layers on `like`'s device, zero-padded into one uint8 tensor [5, 3, h, w], and
    their sizes [5, 2] (int64): built once per (table, size, device) and kept there, so a batch
    uploads nothing. A fake tensor (tests: torch's FakeTensorMode) keeps its own entry."""
    key = (table, height, width, str(like.device), getattr(like, "fake_mode", None))
    if key not in _FROST_CACHE:
        if len(_FROST_CACHE) >= 8:
            _FROST_CACHE.pop(next(iter(_FROST_CACHE)))
        layers = frost_layers(table, height, width, like.device)
        hm, wm = max(t.shape[-2] for t in layers), max(t.shape[-1] for t in layers)
        stack = torch.zeros(len(layers), 3, hm, wm, dtype=torch.uint8, device=like.device)
        for i, t in enumerate(layers):
            stack[i, :, :t.shape[-2], :t.shape[-1]] = t.to(torch.uint8)
        sizes = torch.tensor([list(t.shape[-2:]) for t in layers], dtype=torch.int64, device=like.device)
        _FROST_CACHE[key] = (stack, sizes)
    return _FROST_CACHE[key]


def _draw_frost(x: Tensor, streams, c, table: str) -> dict:
    u = streams.uniform(0, (3,), torch.float64)
    _, sizes = frost_stack(table, *x.shape[-2:], x)
    index = torch.clamp(torch.floor(u[:, 0] * len(sizes)).long(), max=len(sizes) - 1)
    room = sizes[index] - torch.tensor(list(x.shape[-2:]), device=x.device)
    start = torch.floor(u[:, 1:] * room).long()  # numpy randint(0, room): 0 .. room - 1
    return {"index": index, "start": start}


def frost(x: Tensor, c, draws: dict, table: str) -> Tensor:
    keep, amount = c
    B, _, H, W = x.shape
    stack, _ = frost_stack(table, H, W, x)
    _, _, hm, wm = stack.shape
    rows = draws["start"][:, 0, None] + torch.arange(H, device=x.device)[None]  # [B, H]
    cols = draws["start"][:, 1, None] + torch.arange(W, device=x.device)[None]  # [B, W]
    offset = (draws["index"][:, None, None, None] * 3 + torch.arange(3, device=x.device)[None, :, None, None]) * (hm * wm)
    crops = stack.take(offset + rows[:, None, :, None] * wm + cols[:, None, None, :])  # [B, 3, H, W]
    return keep * x.double() + amount * crops.double() / 255.0


# ----------------------------------------------------------------------------- fog

def _plasma_size(x: Tensor) -> int:
    side = max(x.shape[-2], x.shape[-1], x.shape[1])  # the reference takes the max over (H, W, C)
    return 1 if side == 0 else 2 ** (side - 1).bit_length()


def _plasma_draws(n: int) -> int:
    total, step = 0, n
    while step >= 2:
        total += 3 * (n // step) ** 2
        step //= 2
    return total


def _draw_fog(x: Tensor, streams, c, table: str) -> dict:
    return {"u": streams.uniform(0, (_plasma_draws(_plasma_size(x)),), torch.float64)}


def plasma_fractal(u: Tensor, size: int, decay: float) -> Tensor:
    """imagecorruptions' plasma_fractal for each row of uniforms u [B, N] (in the order numpy draws
    them: per level the square centres, then the two diamond grids), float32 [B, size, size] in [0, 1]."""
    B = u.shape[0]
    m = torch.zeros(B, size, size, dtype=torch.float32, device=u.device)
    step, wibble, used = size, 100.0, 0

    def wibbled(avg: Tensor) -> Tensor:
        nonlocal used
        k = avg.shape[-2] * avg.shape[-1]
        draw = (-wibble + (wibble - (-wibble)) * u[:, used:used + k]).reshape(avg.shape)
        used += k
        return ((avg / 4).double() + wibble * draw).float()

    while step >= 2:
        h = step // 2
        corners = m[:, 0::step, 0::step]
        squares = corners + torch.roll(corners, -1, dims=1)
        squares = squares + torch.roll(squares, -1, dims=2)
        m[:, h::step, h::step] = wibbled(squares)
        centres, corners = m[:, h::step, h::step].clone(), m[:, 0::step, 0::step].clone()
        m[:, 0::step, h::step] = wibbled((centres + torch.roll(centres, 1, dims=1)) + (corners + torch.roll(corners, -1, dims=2)))
        m[:, h::step, 0::step] = wibbled((centres + torch.roll(centres, 1, dims=2)) + (corners + torch.roll(corners, -1, dims=1)))
        step //= 2
        wibble /= decay
    m = m - m.amin(dim=(1, 2), keepdim=True)
    return m / m.amax(dim=(1, 2), keepdim=True)


def fog(x: Tensor, c, draws: dict, table: str) -> Tensor:
    amount, decay = c
    H, W = x.shape[-2:]
    plasma = plasma_fractal(draws["u"], _plasma_size(x), float(decay))[:, None, :H, :W]
    x = x.double()
    top = x.amax(dim=(1, 2, 3), keepdim=True)
    return (x + (amount * plasma).double()) * top / (top + amount)


# ----------------------------------------------------------------------------- spatter

_EMBOSS = torch.tensor([[-2.0, -1.0, 0.0], [-1.0, 1.0, 1.0], [0.0, 1.0, 2.0]], dtype=torch.float64)
_WATER = (175 / 255.0, 238 / 255.0, 238 / 255.0)  # pale turquoise, channel order of the image
_MUD = (63 / 255.0, 42 / 255.0, 20 / 255.0)  # brown


def _draw_spatter(x: Tensor, streams, c, table: str) -> dict:
    return {"z": streams.normal(0, x.shape[-2:], torch.float64)}


def spatter(x: Tensor, c, draws: dict, table: str) -> Tensor:
    mean, std, sigma, threshold, intensity, mud = c
    liquid = gaussian_filter(mean + std * draws["z"], sigma)
    liquid = torch.where(liquid < threshold, torch.zeros_like(liquid), liquid)
    x = x.float()
    if mud == 0:  # a Python constant of the severity, not data
        level = torch.floor(liquid * 255).clamp(0, 255)  # .astype(np.uint8)
        dist = distance_to_edges(canny(level, 50, 150), 20.0)
        dist = torch.floor(box3(dist).float())  # blur, then .astype(np.uint8)
        dist = equalize_hist(dist).double()
        dist = filter2d(dist, _EMBOSS.to(x.device)).clamp(0, 255)  # filter2D to CV_8U
        dist = torch.round(box3(dist)).float()  # blur of 8-bit data rounds
        m = level.float() * dist
        top = m.amax(dim=(1, 2), keepdim=True)
        m = torch.where(top > 0, m / torch.where(top > 0, top, torch.ones_like(top)), torch.zeros_like(m)) * intensity
        color = torch.tensor(_WATER, dtype=torch.float32, device=x.device)[None, :, None, None]
        return x + m[:, None] * color
    blobs = gaussian_filter((liquid > threshold).float(), intensity)
    blobs = torch.where(blobs < 0.8, torch.zeros_like(blobs), blobs)[:, None]
    color = torch.tensor(_MUD, dtype=torch.float64, device=x.device)[None, :, None, None] * blobs
    return (x * (1 - blobs)).double() + color


CORRUPTIONS = {  # name -> (draw(x, streams, c, table) -> dict or None, apply(x, c, draws, table))
    "snow": (_draw_snow, snow),
    "frost": (_draw_frost, frost),
    "fog": (_draw_fog, fog),
    "spatter": (_draw_spatter, spatter),
}
