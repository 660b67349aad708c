"""The ImageNet-C / CIFAR-10-C corruption suite, seeded per sample: names, families, severity
tables, validation and `corrupt()`, which dispatches to the family modules (noise.py, blur.py,
weather.py, digital.py; their image operations live in imageops.py).

19 corruptions in four families (FAMILIES), each at severities 1..5:

    noise    gaussian_noise shot_noise impulse_noise | speckle_noise
    blur     defocus_blur glass_blur motion_blur zoom_blur | gaussian_blur
    weather  snow frost fog brightness | spatter
    digital  contrast elastic_transform pixelate jpeg_compression | saturate

The 15 before the bars are ImageNet-C's benchmark corruptions (COMMON); the 4 after them are its
"extra" (held-out) ones (EXTRA), counted here in the family they belong to. `gaussian` is plain
additive Gaussian noise with an explicit sigma instead of a severity (in no family).

Severity tables: "imagenet" holds the ImageNet-C constants as the maintained `imagecorruptions`
package (imagecorruptions-imaug 1.1.5) applies them, "cifar" the CIFAR-10-C constants of
hendrycks/robustness ImageNet-C/create_c/make_cifar_c.py, milder and meant for 32 px images.
Formulas and where the two recipes differ: docs/robustness.md.

Seeding (CORRUPTION_VERSION 2): every random number of a corrupted image is a counter-based hash
of (seed, corruption, severity or sigma, sample id, stream, element), computed on the images'
device in torch integer ops (nvpt/robustness/rng.py). All randomness of a corruption (noise, the
motion-blur angle, the frost crop, the fog fractal, ...) comes from it, so the corrupted image
depends only on those values, never on batch size, batch order or the other samples: every
method and every rerun is evaluated on the same images, on the CPU and on CUDA (up to float
rounding, docs/robustness.md). Version 1 (before) drew from one CPU torch.Generator per sample.
"""
from __future__ import annotations

import math
import numbers
from typing import Iterable

import torch
from torch import Tensor

from nvpt.config import CORRUPTIONS
from nvpt.errors import NVPTError
from nvpt.robustness.rng import SampleStreams, set_key

# Version of the corrupted images: bumped whenever the same (seed, set, sample) gives other
# pixels. Recorded in each run's results.json ("corruption_version"); a results.json without
# it is version 1. 1: per-sample CPU torch.Generator (up to commit 5fb576b); 2: counter-based
# streams on the images' device (nvpt/robustness/rng.py).
CORRUPTION_VERSION = 2
RERUN_HINT = "rerun their evaluation with tools/eval_robustness.py RUN"


def corruption_version(summary: dict) -> int:
    """The corruption code version a summary (results.json, robustness.json, comparison.json)
    was evaluated with: its "corruption_version", 1 when it has none (made before the field)."""
    return int(summary.get("corruption_version", 1)) if isinstance(summary, dict) else 1


def check_versions(summaries: dict[str, dict], what: str = "runs") -> int | None:
    """Refuse to put together summaries evaluated with different corruption versions (their
    noisy images differ): one NVPTError line naming them. Summaries without corrupted sets
    (clean accuracy only) do not count. Returns the common version (None if none counts)."""
    versions: dict[int, list[str]] = {}
    for name, summary in summaries.items():
        if isinstance(summary, dict) and summary.get("sets", True):
            versions.setdefault(corruption_version(summary), []).append(name)
    if len(versions) > 1:
        parts = "; ".join(f"version {v}: {', '.join(names)}" for v, names in sorted(versions.items()))
        old = [n for v, names in versions.items() if v < max(versions) for n in names]
        raise NVPTError(f"{what} were evaluated on different noisy images (corruption code {parts}); "
                        f"{RERUN_HINT} for {', '.join(old)} (or retrain them) so that all have version {max(versions)}")
    return next(iter(versions), None)

GAUSSIAN = "gaussian"  # plain additive Gaussian noise with an explicit sigma
SEVERITIES = (1, 2, 3, 4, 5)
TABLES = ("imagenet", "cifar")
AUTO_TABLE_BELOW = 64  # "auto": images smaller than this use the CIFAR-10-C table

FAMILIES: dict[str, tuple[str, ...]] = {
    "noise": ("gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise"),
    "blur": ("defocus_blur", "glass_blur", "motion_blur", "zoom_blur", "gaussian_blur"),
    "weather": ("snow", "frost", "fog", "brightness", "spatter"),
    "digital": ("contrast", "elastic_transform", "pixelate", "jpeg_compression", "saturate"),
}
EXTRA = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
COMMON = tuple(n for n in CORRUPTIONS if n not in EXTRA)
GROUPS = {"all": CORRUPTIONS, "common": COMMON, "extra": EXTRA, **FAMILIES}  # names that select several
assert sum(FAMILIES.values(), ()) == CORRUPTIONS


def family_of(name: str) -> str | None:
    """The family of a corruption; None for plain `gaussian`."""
    return next((f for f, names in FAMILIES.items() if name in names), None)


def _arange(start: float, stop: float, step: float) -> tuple[float, ...]:
    """numpy.arange for floats (ImageNet-C writes its zoom factors so): ceil((stop - start) / step)
    values, the second start + step, the others start + i * ((start + step) - start)."""
    n = math.ceil((stop - start) / step)
    delta = (start + step) - start
    return tuple(start if i == 0 else start + step if i == 1 else start + i * delta for i in range(n))


# One entry per severity 1..5. Tuples follow the reference's parameter order (docs/robustness.md).
SEVERITY_TABLES: dict[str, dict[str, tuple]] = {
    "imagenet": {
        "gaussian_noise": (0.08, 0.12, 0.18, 0.26, 0.38),
        "shot_noise": (60.0, 25.0, 12.0, 5.0, 3.0),
        "impulse_noise": (0.03, 0.06, 0.09, 0.17, 0.27),
        "speckle_noise": (0.15, 0.2, 0.35, 0.45, 0.6),
        # (disk radius, anti-alias sigma)
        "defocus_blur": ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)),
        # (sigma, max pixel shift, iterations)
        "glass_blur": ((0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)),
        # (radius, sigma) of the one-sided Gaussian along the blur line
        "motion_blur": ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15)),
        # zoom factors averaged with the image
        "zoom_blur": (_arange(1, 1.11, 0.01), _arange(1, 1.16, 0.01), _arange(1, 1.21, 0.02),
                      _arange(1, 1.26, 0.02), _arange(1, 1.31, 0.03)),
        "gaussian_blur": (1, 2, 3, 4, 6),
        # (mean, std, zoom, threshold, blur radius, blur sigma, image weight) of the snow layer
        "snow": ((0.1, 0.3, 3, 0.5, 10, 4, 0.8), (0.2, 0.3, 2, 0.5, 12, 4, 0.7), (0.55, 0.3, 4, 0.9, 12, 8, 0.7),
                 (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65), (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55)),
        # (image weight, frost weight)
        "frost": ((1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75)),
        # (fog weight, fractal roughness decay)
        "fog": ((1.5, 2), (2.0, 2), (2.5, 1.7), (2.5, 1.5), (3.0, 1.4)),
        "brightness": (0.1, 0.2, 0.3, 0.4, 0.5),
        # (mean, std, sigma, threshold, intensity, mud) of the liquid layer; mud 0: water, 1: mud
        "spatter": ((0.65, 0.3, 4, 0.69, 0.6, 0), (0.65, 0.3, 3, 0.68, 0.6, 0), (0.65, 0.3, 2, 0.68, 0.5, 0),
                    (0.65, 0.3, 1, 0.65, 1.5, 1), (0.67, 0.4, 1, 0.65, 1.5, 1)),
        "contrast": (0.4, 0.3, 0.2, 0.1, 0.05),
        # alpha of imagecorruptions' elastic transform (sigma 1 % and shifts 0.5 % of the image height)
        "elastic_transform": (250 * 0.05, 250 * 0.065, 250 * 0.085, 250 * 0.1, 250 * 0.12),
        # side of the downscaled image / side of the image
        "pixelate": (0.6, 0.5, 0.4, 0.3, 0.25),
        # JPEG quality
        "jpeg_compression": (25, 18, 15, 10, 7),
        # (saturation factor, saturation offset)
        "saturate": ((0.3, 0), (0.1, 0), (2, 0), (5, 0.1), (20, 0.2)),
    },
    "cifar": {
        "gaussian_noise": (0.04, 0.06, 0.08, 0.09, 0.10),
        "shot_noise": (500.0, 250.0, 100.0, 75.0, 50.0),
        "impulse_noise": (0.01, 0.02, 0.03, 0.05, 0.07),
        "speckle_noise": (0.06, 0.1, 0.12, 0.16, 0.2),
        "defocus_blur": ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)),
        "glass_blur": ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)),
        "motion_blur": ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)),
        "zoom_blur": (_arange(1, 1.06, 0.01), _arange(1, 1.11, 0.01), _arange(1, 1.16, 0.01),
                      _arange(1, 1.21, 0.01), _arange(1, 1.26, 0.01)),
        "gaussian_blur": (0.4, 0.6, 0.7, 0.8, 1),
        "snow": ((0.1, 0.2, 1, 0.6, 8, 3, 0.95), (0.1, 0.2, 1, 0.5, 10, 4, 0.9), (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
                 (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85), (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8)),
        "frost": ((1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)),
        "fog": ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)),
        "brightness": (0.05, 0.1, 0.15, 0.2, 0.3),
        "spatter": ((0.62, 0.1, 0.7, 0.7, 0.5, 0), (0.65, 0.1, 0.8, 0.7, 0.5, 0), (0.65, 0.3, 1, 0.69, 0.5, 0),
                    (0.65, 0.1, 0.7, 0.69, 0.6, 1), (0.65, 0.1, 0.5, 0.68, 0.6, 1)),
        "contrast": (0.75, 0.5, 0.4, 0.3, 0.15),
        # CIFAR-10-C's elastic transform: (alpha, sigma, affine jitter) as fractions of the image side
        "elastic_transform": ((0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05),
                              (0.1, 0.03, 0.03)),
        "pixelate": (0.95, 0.9, 0.85, 0.75, 0.65),
        "jpeg_compression": (80, 65, 58, 50, 40),
        "saturate": ((0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)),
    },
}
assert all(tuple(t) == CORRUPTIONS for t in SEVERITY_TABLES.values())


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


def corruption_param(name: str, severity: int, table: str):
    """The constant (a number, or a tuple in the reference's order) of corruption `name` at
    `severity` (1..5) in `table`."""
    if table not in TABLES:
        raise NVPTError(f"unknown severity table {table!r}; valid: {_choices(TABLES)} "
                        f"('auto' must be resolved with resolve_table first)")
    if name == GAUSSIAN:
        raise NVPTError("corruption 'gaussian' has no severity table; pass sigma, or use 'gaussian_noise'")
    check_set(name, severity, None)
    value = SEVERITY_TABLES[table][name][int(severity) - 1]
    return float(value) if isinstance(value, numbers.Real) else value


def resolve_table(table: str, img_size: int) -> str:
    """'auto' -> 'cifar' for images smaller than 64 px, else 'imagenet'; others pass through."""
    if table not in ("auto",) + TABLES:
        raise NVPTError(f"unknown severity table {table!r}; valid: {_choices(('auto',) + TABLES)}")
    if isinstance(img_size, bool) or not isinstance(img_size, numbers.Integral) or img_size < 1:
        raise NVPTError(f"img_size must be a positive integer, got {img_size!r}")
    if table != "auto":
        return table
    return "cifar" if img_size < AUTO_TABLE_BELOW else "imagenet"


def sample_streams(seed: int, name: str, severity: int | None, sample_ids, sigma: float | None = None,
                   device: torch.device | str | None = None) -> SampleStreams:
    """The random streams of each sample of a batch for one evaluation set, on `device` (by
    default the ids' device): everything random about its corrupted image."""
    level = f"sigma={float(sigma)!r}" if name == GAUSSIAN else f"severity={int(severity)}"
    ids = torch.as_tensor(sample_ids)
    return SampleStreams(set_key(int(seed), name, level), ids, ids.device if device is None else device)


def _implementations() -> dict:
    from nvpt.robustness import blur, digital, noise, weather

    return {**noise.CORRUPTIONS, **blur.CORRUPTIONS, **weather.CORRUPTIONS, **digital.CORRUPTIONS}


def corrupt(images: Tensor, name: str, severity: int | None, sample_ids: Tensor, seed: int,
            table: str = "imagenet", sigma: float | None = None) -> Tensor:
    """Corrupt a batch. images [B, C, H, W] float in [0, 1] (C = 3, or 1: corrupted as grey RGB
    and turned back into luma; the noise family works on any C); sample_ids [B] integer ids
    (stable across runs, e.g. dataset indices). Returns [B, C, H, W], clipped to [0, 1], same
    dtype and device as `images`. Computed in float32/float64 whatever the input dtype."""
    check_set(name, severity, sigma)
    c = float(sigma) if name == GAUSSIAN else corruption_param(name, severity, table)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise NVPTError(f"corruption seed must be an integer, got {seed!r}")
    if not isinstance(images, Tensor) or images.ndim != 4 or not images.is_floating_point():
        got = f"{tuple(images.shape)} {images.dtype}" if isinstance(images, Tensor) else type(images).__name__
        raise NVPTError(f"images must be a float tensor [B, C, H, W] in [0, 1], got {got}")
    ids = torch.as_tensor(sample_ids)
    if ids.ndim != 1 or ids.numel() != images.shape[0] or ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        raise NVPTError(f"sample_ids must be integer ids of shape [{images.shape[0]}], "
                        f"got {tuple(ids.shape)} {ids.dtype}")
    channels = images.shape[1]
    rgb_op = family_of(name) not in ("noise", None)  # every family but noise (and plain `gaussian`) works on RGB
    if rgb_op and channels not in (1, 3):
        raise NVPTError(f"corruption {name!r} needs RGB (3-channel) or grey (1-channel) images, got {channels} channels")
    if images.shape[0] == 0:
        return images.clone()

    draw, apply = _implementations()[name]
    x = images.float()  # float32 whatever the input dtype (same images for all), cast back at the end
    grey = rgb_op and channels == 1
    if grey:
        x = x.expand(-1, 3, -1, -1)
    draws = draw(x, sample_streams(seed, name, severity, ids, sigma, x.device), c, table) if draw else None
    out = apply(x, c, draws, table)
    if grey:
        from nvpt.robustness.imageops import rgb_to_gray

        out = rgb_to_gray(out.float().clamp(0.0, 1.0))  # the RGB image as saved, then its luma
    return out.clamp(0.0, 1.0).to(images.dtype)


def expand_corruptions(names: Iterable[str]) -> list[str]:
    """Corruption names with the group names (all, common, extra, noise, blur, weather, digital)
    replaced by their members, in the order given; unknown names raise."""
    out: list[str] = []
    for name in names:
        if name in GROUPS:
            out.extend(GROUPS[name])
        elif name in CORRUPTIONS:
            out.append(name)
        else:
            hint = "; use gaussian_stds for plain Gaussian noise" if name == GAUSSIAN else ""
            raise NVPTError(f"unknown corruption {name!r}; valid: {_choices(CORRUPTIONS)} "
                            f"or a group: {_choices(GROUPS)}{hint}")
    return out


def corruption_grid(corruptions: Iterable[str] | None, severities: Iterable[int] | None,
                    gaussian_stds: Iterable[float] | None) -> list[tuple[str, int | None, float | None]]:
    """Every evaluation set as (name, severity, sigma): each corruption at each severity
    (in the given order; groups such as 'all' or 'blur' expanded), then ("gaussian", None, sigma)
    for each std. Validated up front."""
    names = expand_corruptions(corruptions or ())
    sevs, stds = list(severities or ()), list(gaussian_stds or ())
    for s in sevs:
        _check_severity(s, "each severity")
    for sd in stds:
        _check_sigma(sd)
    for label, values in (("corruptions", names), ("severities", sevs), ("gaussian_stds", stds)):
        if len(set(values)) != len(values):
            twice = next(v for v in values if values.count(v) > 1)
            raise NVPTError(f"{label} lists {twice!r} twice (groups such as 'noise' or 'all' count "
                            f"their members): {list(corruptions or ()) if label == 'corruptions' else values}")
    if names and not sevs:
        raise NVPTError(f"corruptions {names} need at least one severity ({_choices(SEVERITIES)})")
    return ([(n, int(s), None) for n in names for s in sevs]
            + [(GAUSSIAN, None, float(sd)) for sd in stds])
