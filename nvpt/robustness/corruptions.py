"""Noise corruptions of ImageNet-C / CIFAR-10-C, seeded per sample.

Formulas (x: image in [0, 1], c: the severity's constant; output clipped to [0, 1]):

    gaussian_noise  x + N(0, c^2)                 c = standard deviation
    shot_noise      Poisson(x * c) / c            c = photons per unit intensity
    impulse_noise   salt & pepper, amount c       each element independently: 1 with
                                                  prob c/2, 0 with prob c/2, else x
    speckle_noise   x + x * N(0, c^2)             c = std of the multiplicative noise
    gaussian        x + N(0, sigma^2)             explicit sigma, no severity

Severity constants are those of Hendrycks & Dietterich, "Benchmarking Neural
Network Robustness to Common Corruptions and Perturbations" (ICLR 2019), checked
against hendrycks/robustness: ImageNet-C/imagenet_c/imagenet_c/corruptions.py
("imagenet") and ImageNet-C/create_c/make_cifar_c.py ("cifar", the 32x32 tables).
Impulse noise follows skimage `random_noise(mode='s&p', salt_vs_pepper=0.5)`:
every channel element is flipped independently.

Seeding: each sample gets its own CPU `torch.Generator`, seeded by SHA-256 of
(seed, corruption, severity or sigma, sample id). The noisy image therefore depends
only on those values, never on batch size, batch order or the other samples, so
every method and every rerun is evaluated on the same images. Noise is drawn on
the CPU and then moved to the images' device because CPU and CUDA generators give
different streams for the same seed; the arithmetic after that is elementwise
(one rounding per op), so CPU and GPU runs see the same images.
"""
from __future__ import annotations

import hashlib
import math
import numbers
from typing import Iterable

import torch
from torch import Tensor

from nvpt.config import CORRUPTIONS
from nvpt.errors import NVPTError

GAUSSIAN = "gaussian"  # plain additive Gaussian noise with an explicit sigma
SEVERITIES = (1, 2, 3, 4, 5)
TABLES = ("imagenet", "cifar")
AUTO_TABLE_BELOW = 64  # "auto": images smaller than this use the CIFAR-10-C table

SEVERITY_TABLES: dict[str, dict[str, tuple[float, ...]]] = {
    "imagenet": {
        "gaussian_noise": (0.08, 0.12, 0.18, 0.26, 0.38),
        "shot_noise": (60.0, 25.0, 12.0, 5.0, 3.0),
        "impulse_noise": (0.03, 0.06, 0.09, 0.17, 0.27),
        "speckle_noise": (0.15, 0.2, 0.35, 0.45, 0.6),
    },
    "cifar": {
        "gaussian_noise": (0.04, 0.06, 0.08, 0.09, 0.10),
        "shot_noise": (500.0, 250.0, 100.0, 75.0, 50.0),
        "impulse_noise": (0.01, 0.02, 0.03, 0.05, 0.07),
        "speckle_noise": (0.06, 0.1, 0.12, 0.16, 0.2),
    },
}


def _choices(values: Iterable) -> str:
    return ", ".join(str(v) for v in values)


def _check_severity(severity, owner: str) -> None:
    if isinstance(severity, bool) or not isinstance(severity, numbers.Integral) or severity not in SEVERITIES:
        raise NVPTError(f"{owner} must be one of {_choices(SEVERITIES)}, got {severity!r}")


def _check_sigma(sigma) -> None:
    if (isinstance(sigma, bool) or not isinstance(sigma, numbers.Real)
            or not math.isfinite(sigma) or sigma <= 0):
        raise NVPTError(f"gaussian sigma must be a finite number > 0 (pixel scale [0, 1]), got {sigma!r}")


def check_set(name: str, severity: int | None, sigma: float | None) -> None:
    """Validate one evaluation set: a named corruption with a severity 1..5, or
    "gaussian" with sigma > 0 (and no severity)."""
    if name == GAUSSIAN:
        if severity is not None:
            raise NVPTError(f"corruption 'gaussian' takes sigma, not a severity (got severity={severity!r}); "
                            f"for the table-driven version use 'gaussian_noise'")
        if sigma is None:
            raise NVPTError("corruption 'gaussian' needs sigma: a noise std > 0 on the [0, 1] pixel scale")
        _check_sigma(sigma)
        return
    if name not in CORRUPTIONS:
        raise NVPTError(f"unknown corruption {name!r}; valid: {_choices(CORRUPTIONS + (GAUSSIAN,))}")
    if sigma is not None:
        raise NVPTError(f"corruption {name!r} takes a severity ({_choices(SEVERITIES)}), not sigma; "
                        f"use 'gaussian' for an explicit sigma")
    _check_severity(severity, f"severity of {name!r}")


def corruption_param(name: str, severity: int, table: str) -> float:
    """The constant c of corruption `name` at `severity` (1..5) in `table`."""
    if table not in TABLES:
        raise NVPTError(f"unknown severity table {table!r}; valid: {_choices(TABLES)} "
                        f"('auto' must be resolved with resolve_table first)")
    if name == GAUSSIAN:
        raise NVPTError("corruption 'gaussian' has no severity table; pass sigma, or use 'gaussian_noise'")
    check_set(name, severity, None)
    return float(SEVERITY_TABLES[table][name][int(severity) - 1])


def resolve_table(table: str, img_size: int) -> str:
    """'auto' -> 'cifar' for images smaller than 64 px, else 'imagenet'; others pass through."""
    if table not in ("auto",) + TABLES:
        raise NVPTError(f"unknown severity table {table!r}; valid: {_choices(('auto',) + TABLES)}")
    if isinstance(img_size, bool) or not isinstance(img_size, numbers.Integral) or img_size < 1:
        raise NVPTError(f"img_size must be a positive integer, got {img_size!r}")
    if table != "auto":
        return table
    return "cifar" if img_size < AUTO_TABLE_BELOW else "imagenet"


def _sample_seed(seed: int, name: str, level: str, sample_id: int) -> int:
    # hashlib, not hash(): Python salts str hashes per process.
    digest = hashlib.sha256(f"nvpt-corruption|{seed}|{name}|{level}|{sample_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def corrupt(images: Tensor, name: str, severity: int | None, sample_ids: Tensor, seed: int,
            table: str = "imagenet", sigma: float | None = None) -> Tensor:
    """Corrupt a batch. images [B, C, H, W] float in [0, 1]; sample_ids [B] integer ids
    (stable across runs, e.g. dataset indices). Returns [B, C, H, W], clipped to [0, 1],
    same dtype and device as `images`."""
    check_set(name, severity, sigma)
    c = float(sigma) if name == GAUSSIAN else corruption_param(name, severity, table)
    level = f"sigma={float(sigma)!r}" if name == GAUSSIAN else f"severity={int(severity)}"
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise NVPTError(f"corruption seed must be an integer, got {seed!r}")
    if not isinstance(images, Tensor) or images.ndim != 4 or not images.is_floating_point():
        got = f"{tuple(images.shape)} {images.dtype}" if isinstance(images, Tensor) else type(images).__name__
        raise NVPTError(f"images must be a float tensor [B, C, H, W] in [0, 1], got {got}")
    ids = torch.as_tensor(sample_ids)
    if ids.ndim != 1 or ids.numel() != images.shape[0] or ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        raise NVPTError(f"sample_ids must be integer ids of shape [{images.shape[0]}], "
                        f"got {tuple(ids.shape)} {ids.dtype}")
    if images.shape[0] == 0:
        return images.clone()

    gens = [torch.Generator().manual_seed(_sample_seed(int(seed), name, level, i)) for i in ids.tolist()]
    shape = images.shape[1:]
    x = images.float()  # float32 whatever the input dtype (same images for all), cast back at the end
    if name == "shot_noise":
        # torch.poisson draws from the rate itself, so the rate goes to the CPU generator.
        rate = x.cpu() * c
        counts = torch.stack([torch.poisson(r, generator=g) for r, g in zip(rate, gens)])
        out = counts.to(x.device) / c
    elif name == "impulse_noise":
        u = torch.stack([torch.rand(shape, generator=g) for g in gens]).to(x.device)
        # u < c flips the element; the lower half of that range is salt, the upper pepper.
        out = x.masked_fill(u < c, 0.0).masked_fill(u < c / 2, 1.0)
    else:
        z = torch.stack([torch.randn(shape, generator=g) for g in gens]).to(x.device)
        noise = z * c
        # speckle scales the noise by the pixel value; separate ops keep rounding device-independent
        out = x + (x * noise if name == "speckle_noise" else noise)
    return out.clamp_(0.0, 1.0).to(images.dtype)


def corruption_grid(corruptions: Iterable[str] | None, severities: Iterable[int] | None,
                    gaussian_stds: Iterable[float] | None) -> list[tuple[str, int | None, float | None]]:
    """Every evaluation set as (name, severity, sigma): each corruption at each severity
    (in the given order), then ("gaussian", None, sigma) for each std. Validated up front."""
    names, sevs, stds = list(corruptions or ()), list(severities or ()), list(gaussian_stds or ())
    for name in names:
        if name not in CORRUPTIONS:
            hint = "; use gaussian_stds for plain Gaussian noise" if name == GAUSSIAN else ""
            raise NVPTError(f"unknown corruption {name!r}; valid: {_choices(CORRUPTIONS)}{hint}")
    for s in sevs:
        _check_severity(s, "each severity")
    for sd in stds:
        _check_sigma(sd)
    for label, values in (("corruptions", names), ("severities", sevs), ("gaussian_stds", stds)):
        if len(set(values)) != len(values):
            raise NVPTError(f"{label} lists a value twice: {values}")
    if names and not sevs:
        raise NVPTError(f"corruptions {names} need at least one severity ({_choices(SEVERITIES)})")
    return ([(n, int(s), None) for n in names for s in sevs]
            + [(GAUSSIAN, None, float(sd)) for sd in stds])
