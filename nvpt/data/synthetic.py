"""Procedural images for offline pretraining: synthetic texture classes, deterministic by seed.

Each class is one generator family with class parameters drawn from a generator seeded by
(data.generator_seed, class); each image of the class draws its own variation (positions,
phases, colour jitter) from a generator seeded by (data.generator_seed, split, class, index).
So the same seed renders bit-identical images on any machine, another seed another task,
and no image is ever stored: the data set is this file.

Families (every class has its own colour palette, jittered per image):
  dead_leaves   occluding disks, squares or oriented ellipses with power-law sizes (Matheron;
                Lee, Mumford & Huang 2001; Baradad et al. 2021)
  spectral      Gaussian noise with a 1/f^beta spectrum, oriented, through a colour gradient
  sinusoids     sums of oriented gratings (sine, square or triangle waves), jittered orientation
  gabor         scattered Gabor wavelets of one frequency and orientation spread
  fractal       iterated function systems drawn by the chaos game, as in FractalDB
                (Kataoka et al. 2020), with the per-image parameter jitter of its instances

Images are rendered at data.crop_size pixels (square, RGB uint8) and pass through the
same resize as the texture crops; `data.transform=fgvc` adds random resized crops
(data.crop_scale), flips and, with data.random_grayscale, grayscale conversion.
"""
from __future__ import annotations

import functools

import numpy as np
import torch
from torchvision import transforms as T

from nvpt.config import SYNTHETIC_FAMILIES as FAMILIES
from nvpt.data import ArrayImages, Splits, val_count
from nvpt.data.transforms import BICUBIC, ToMode, vtab_transform

SPLITS = ("train", "val", "test")


# ---------------------------------------------------------------- colour
def _palette(rng: np.random.Generator) -> np.ndarray:
    """3 to 5 RGB colours in [0,1] spanning a class-specific range of luminance."""
    k = int(rng.integers(3, 6))
    base = rng.uniform(0, 1, 3)
    spread = rng.uniform(0.15, 0.6)
    colours = np.clip(base + rng.normal(0, spread, (k, 3)), 0, 1)
    lum = rng.permutation(np.linspace(rng.uniform(0, 0.3), rng.uniform(0.7, 1.0), k))  # keep contrast in grayscale
    gray = colours.mean(1, keepdims=True)
    saturation = rng.uniform(0.15, 1.0)  # natural textures are mostly muted
    return np.clip(saturation * (colours - gray) + lum[:, None], 0, 1)


def _jitter_palette(palette: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.clip(palette + rng.normal(0, 0.05, palette.shape) + rng.normal(0, 0.04, (1, 3)), 0, 1)


def _gradient(values: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Map values in [0,1] [H,W] through the palette as a piecewise-linear colour gradient -> [H,W,3]."""
    pos = values * (len(palette) - 1)
    low = np.clip(np.floor(pos).astype(int), 0, len(palette) - 2)
    frac = (pos - low)[..., None]
    return palette[low] * (1 - frac) + palette[low + 1] * frac


def _rank_normalize(field: np.ndarray) -> np.ndarray:
    """Values -> [0,1] by their empirical CDF (a uniform histogram whatever the field's distribution)."""
    flat = field.ravel()
    ranks = np.empty(flat.size)
    ranks[np.argsort(flat, kind="stable")] = np.linspace(0, 1, flat.size)
    return ranks.reshape(field.shape)


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    c = (np.arange(size) + 0.5) / size
    return np.meshgrid(c, c, indexing="ij")  # yy, xx in (0,1)


# ---------------------------------------------------------------- families
def _dead_leaves_params(rng):
    return {"shape": str(rng.choice(["disk", "square", "ellipse"])), "alpha": rng.uniform(1.5, 3.5),
            "rmin": rng.uniform(0.01, 0.04), "rmax": rng.uniform(0.08, 0.35), "aspect": rng.uniform(1.5, 4.0),
            "angle": rng.uniform(0, np.pi), "angle_spread": rng.choice([0.1, 0.4, np.pi])}


def _dead_leaves(p, palette, rng, size):
    """Painter's algorithm: shapes drawn back to front, each only inside its bounding box."""
    yy, xx = _grid(size)
    n = 120
    a = 1 - p["alpha"]  # radii from a power law r^-alpha on [rmin, rmax] (inverse CDF)
    r = (p["rmin"] ** a + rng.uniform(0, 1, n) * (p["rmax"] ** a - p["rmin"] ** a)) ** (1 / a)
    cy, cx = rng.uniform(-0.1, 1.1, n), rng.uniform(-0.1, 1.1, n)
    th = p["angle"] + rng.uniform(-p["angle_spread"], p["angle_spread"], n)
    colours = palette[rng.integers(0, len(palette), n)] + rng.normal(0, 0.03, (n, 3))
    image = np.empty((size, size, 3))
    image[:] = palette[0]
    reach = r * (p["aspect"] if p["shape"] == "ellipse" else 1.5)
    for i in range(n):
        r0, r1 = max(int((cy[i] - reach[i]) * size), 0), min(int((cy[i] + reach[i]) * size) + 1, size)
        c0, c1 = max(int((cx[i] - reach[i]) * size), 0), min(int((cx[i] + reach[i]) * size) + 1, size)
        if r0 >= r1 or c0 >= c1:
            continue
        dy, dx = yy[r0:r1, c0:c1] - cy[i], xx[r0:r1, c0:c1] - cx[i]
        if p["shape"] == "disk":
            inside = dy**2 + dx**2 <= r[i] ** 2
        else:
            u, v = dx * np.cos(th[i]) + dy * np.sin(th[i]), -dx * np.sin(th[i]) + dy * np.cos(th[i])
            if p["shape"] == "square":
                inside = (np.abs(u) <= r[i]) & (np.abs(v) <= r[i])
            else:
                inside = (u / r[i]) ** 2 + (v * p["aspect"] / r[i]) ** 2 <= 1
        image[r0:r1, c0:c1][inside] = colours[i]
    return image


def _spectral_params(rng):
    return {"beta": rng.uniform(0.8, 3.2), "angle": rng.uniform(0, np.pi), "aniso": rng.uniform(0, 0.9),
            "f0": rng.choice([0.0, rng.uniform(0.05, 0.3)]), "bandwidth": rng.uniform(0.03, 0.12)}


def _spectral(p, palette, rng, size):
    f = np.fft.fftfreq(size)
    fy, fx = np.meshgrid(f, f, indexing="ij")
    th = p["angle"]
    fu = fx * np.cos(th) + fy * np.sin(th)
    fv = -fx * np.sin(th) + fy * np.cos(th)
    radius = np.sqrt((fu * (1 - p["aniso"])) ** 2 + fv**2) + 1e-6
    amp = radius ** (-p["beta"] / 2)
    if p["f0"] > 0:  # band-pass: a ring of preferred frequency
        amp = amp * np.exp(-((radius - p["f0"]) ** 2) / (2 * p["bandwidth"] ** 2))
    amp[0, 0] = 0
    spectrum = amp * (rng.normal(size=(size, size)) + 1j * rng.normal(size=(size, size)))
    field = np.real(np.fft.ifft2(spectrum))
    return _gradient(_rank_normalize(field), palette)


def _sinusoids_params(rng):
    m = int(rng.integers(1, 4))
    return {"freq": rng.uniform(1.5, 14, m), "angle": rng.uniform(0, np.pi, m), "weight": rng.uniform(0.4, 1, m),
            "wave": str(rng.choice(["sine", "square", "triangle"]))}


def _sinusoids(p, palette, rng, size):
    yy, xx = _grid(size)
    field = np.zeros((size, size))
    for freq, angle, weight in zip(p["freq"], p["angle"], p["weight"]):
        freq = freq * rng.uniform(0.93, 1.07)
        angle = angle + rng.normal(0, 0.06)
        phase = 2 * np.pi * (freq * (xx * np.cos(angle) + yy * np.sin(angle))) + rng.uniform(0, 2 * np.pi)
        wave = {"sine": np.sin(phase), "square": np.tanh(4 * np.sin(phase)),
                "triangle": 2 / np.pi * np.arcsin(np.sin(phase))}[p["wave"]]
        field += weight * wave
    field += rng.normal(0, 0.05, field.shape)
    lo, hi = field.min(), field.max()
    return _gradient((field - lo) / max(hi - lo, 1e-6), palette)


def _gabor_params(rng):
    return {"freq": rng.uniform(3, 12), "angle": rng.uniform(0, np.pi), "angle_spread": rng.choice([0.05, 0.3, np.pi]),
            "sigma": rng.uniform(0.03, 0.12), "count": int(rng.integers(6, 40))}


def _gabor(p, palette, rng, size):
    yy, xx = _grid(size)
    n = p["count"]
    cy, cx = rng.uniform(0, 1, n), rng.uniform(0, 1, n)
    th = p["angle"] + rng.uniform(-p["angle_spread"], p["angle_spread"], n)
    amplitude = rng.choice([-1.0, 1.0], n)
    phase = rng.uniform(0, 2 * np.pi, n)
    field = np.zeros((size, size))
    reach = 3 * p["sigma"]
    for i in range(n):  # each wavelet only inside its 3-sigma box
        r0, r1 = max(int((cy[i] - reach) * size), 0), min(int((cy[i] + reach) * size) + 1, size)
        c0, c1 = max(int((cx[i] - reach) * size), 0), min(int((cx[i] + reach) * size) + 1, size)
        dy, dx = yy[r0:r1, c0:c1] - cy[i], xx[r0:r1, c0:c1] - cx[i]
        envelope = np.exp(-(dy**2 + dx**2) / (2 * p["sigma"] ** 2))
        carrier = np.cos(2 * np.pi * p["freq"] * (dx * np.cos(th[i]) + dy * np.sin(th[i])) + phase[i])
        field[r0:r1, c0:c1] += amplitude[i] * envelope * carrier
    return _gradient((np.tanh(1.5 * field) + 1) / 2, palette)


def _fractal_params(rng):
    """An IFS of 2-4 affine maps, redrawn until every map contracts (FractalDB's filter, simplified)."""
    while True:
        m = int(rng.integers(2, 5))
        maps = rng.uniform(-1, 1, (m, 6))
        linear = maps[:, :4].reshape(m, 2, 2)
        dets = np.abs(np.linalg.det(linear))
        if np.all(np.linalg.norm(linear, ord=2, axis=(1, 2)) < 0.95) and dets.sum() > 0.25:
            return {"maps": maps, "prob": dets / dets.sum()}


def _fractal(p, palette, rng, size):
    maps = p["maps"] + rng.normal(0, 0.03, p["maps"].shape)  # per-image jitter of the class's IFS
    linear, shift = maps[:, :4].reshape(-1, 2, 2), maps[:, 4:]
    chains, steps = 512, 40
    cumulative = np.cumsum(p["prob"])
    pts = rng.uniform(-1, 1, (chains, 2))
    points = []
    for step in range(steps):
        k = np.minimum(np.searchsorted(cumulative, rng.uniform(0, 1, chains)), len(maps) - 1)
        pts = np.einsum("nij,nj->ni", linear[k], pts) + shift[k]
        if step >= 8:
            points.append(pts)
    pts = np.concatenate(points)
    lo, hi = np.percentile(pts, 1, axis=0), np.percentile(pts, 99, axis=0)
    pts = (pts - lo) / np.maximum(hi - lo, 1e-6)
    pts = pts * rng.uniform(0.7, 1.0) + rng.uniform(0.0, 0.3, 2)  # scale and place the attractor
    ij = np.clip((pts * size).astype(int), 0, size - 1)
    hist = np.zeros((size, size))
    np.add.at(hist, (ij[:, 1], ij[:, 0]), 1.0)
    density = np.log1p(hist) / max(np.log1p(hist).max(), 1e-6)
    return _gradient(density, palette)


_FAMILY_FNS = {"dead_leaves": (_dead_leaves_params, _dead_leaves), "spectral": (_spectral_params, _spectral),
               "sinusoids": (_sinusoids_params, _sinusoids), "gabor": (_gabor_params, _gabor),
               "fractal": (_fractal_params, _fractal)}


# ---------------------------------------------------------------- classes and images
@functools.lru_cache(maxsize=4096)
def class_spec(generator_seed: int, label: int, families: tuple[str, ...]) -> tuple[str, dict, np.ndarray]:
    """(family, parameters, palette) of class `label`: families take turns, parameters are seeded per class."""
    family = families[label % len(families)]
    rng = np.random.default_rng([generator_seed, 1_000_000 + label])
    params = _FAMILY_FNS[family][0](rng)
    return family, params, _palette(rng)


def render(generator_seed: int, split: str, label: int, index: int, size: int,
           families: tuple[str, ...] = FAMILIES) -> np.ndarray:
    """Image `index` of class `label` in `split`: uint8 [size, size, 3], a pure function of its arguments."""
    family, params, palette = class_spec(generator_seed, label, families)
    rng = np.random.default_rng([generator_seed, SPLITS.index(split), label, index])
    image = _FAMILY_FNS[family][1](params, _jitter_palette(palette, rng), rng, size)
    return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)


def render_grid(generator_seed: int, split: str, classes: int, per_class: int, size: int,
                families: tuple[str, ...] = FAMILIES) -> np.ndarray:
    """uint8 [classes*per_class, size, size, 3]: images 0..per_class-1 of each class, class by class."""
    return np.stack([render(generator_seed, split, k, i, size, families)
                     for k in range(classes) for i in range(per_class)])


def pretrain_transform(img_size: int, in_chans: int, crop_scale, random_grayscale: float) -> T.Compose:
    """Random resized crop of the rendered image, flips, optional random grayscale (torchvision)."""
    steps = [ToMode(3), T.RandomResizedCrop(img_size, scale=tuple(crop_scale), interpolation=BICUBIC),
             T.RandomHorizontalFlip(), T.RandomVerticalFlip()]
    if random_grayscale > 0:
        steps.append(T.RandomGrayscale(random_grayscale))
    return T.Compose([*steps, ToMode(in_chans), T.ToTensor()])


def build(cfg, img_size: int, in_chans: int) -> Splits:
    d = cfg.data
    families = tuple(d.synthetic_families)
    if d.transform == "fgvc":
        train_tf = pretrain_transform(img_size, in_chans, d.crop_scale, d.random_grayscale)
    else:
        train_tf = vtab_transform(img_size, in_chans)
    eval_tf = vtab_transform(img_size, in_chans)
    n = d.synthetic_classes

    def images(split: str, per_class: int, transform) -> ArrayImages:  # rendered once, kept as uint8
        grid = render_grid(d.generator_seed, split, n, per_class, d.crop_size, families)
        return ArrayImages(grid, np.repeat(np.arange(n), per_class), np.arange(len(grid)), transform)

    n_val = val_count(d)
    val = images("val", n_val, eval_tf) if n_val else None
    names = [f"{class_spec(d.generator_seed, k, families)[0]}_{k:04d}" for k in range(n)]
    return Splits(images("train", d.train_per_class, train_tf), val, images("test", d.test_per_class, eval_tf), names)


def preview(generator_seed: int = 0, classes: int = 10, per_class: int = 8, size: int = 64,
            families: tuple[str, ...] = FAMILIES) -> torch.Tensor:
    """[classes*per_class, 3, size, size] float training images, class by class (a contact sheet's rows)."""
    grid = render_grid(generator_seed, "train", classes, per_class, size, families)
    return torch.from_numpy(grid).permute(0, 3, 1, 2).float() / 255
