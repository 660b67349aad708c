"""The 19-corruption suite: every corruption against the reference implementation (the
imagecorruptions-imaug package, and OpenCV / scipy for CIFAR-10-C's own recipes), growth with
severity, determinism per (seed, image), pixel range; the severity tables; grey images; groups.

Test images: 32 px crops of the texture photographs shipped with the package, in colour, on the
8-bit grid (the reference works on uint8 images).
"""
import ast
import hashlib
import inspect
from functools import lru_cache
from pathlib import Path

import cv2
import imagecorruptions
import imagecorruptions.corruptions as reference
import numpy as np
import pytest
import scipy.ndimage as ndi
import torch
import torch.nn.functional as F
from PIL import Image
from skimage.filters import gaussian as sk_gaussian
from skimage.util import random_noise

from nvpt.config import CORRUPTIONS
from nvpt.errors import NVPTError
from nvpt.robustness import weather
from nvpt.robustness.corruptions import (
    COMMON,
    EXTRA,
    FAMILIES,
    SEVERITY_TABLES,
    _implementations,
    corrupt,
    corruption_grid,
    corruption_param,
    family_of,
    sample_streams,
)
from nvpt.robustness.imageops import rgb_to_hsv

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parent.parent
TEXTURES = ROOT / "nvpt" / "data" / "assets" / "textures"
TABLES = ("imagenet", "cifar")
RANDOM = [n for n in CORRUPTIONS if _implementations()[n][0] is not None]  # corruptions that draw


PHOTOS = ("cork", "deco_paper", "mamurk_a_2", "mamurk_b_1")  # in colour, textured, dark to bright


@lru_cache(maxsize=4)
def photos(n: int = 4, size: int = 32) -> torch.Tensor:
    """n colour crops (64 px from the centre of texture photographs, area-resized), 8-bit values."""
    crops = []
    for name in PHOTOS[:n]:
        with Image.open(TEXTURES / f"{name}.png") as im:
            rgb = im.convert("RGB")
        t = torch.frombuffer(bytearray(rgb.tobytes()), dtype=torch.uint8).reshape(rgb.height, rgb.width, 3)
        h, w = rgb.height // 2, rgb.width // 2
        crops.append(t[h - 32:h + 32, w - 32:w + 32].permute(2, 0, 1).float() / 255)
    x = F.interpolate(torch.stack(crops), size=(size, size), mode="area")
    return torch.round(x * 255) / 255


def ids(x):
    return torch.arange(x.shape[0])


# ----------------------------------------------------------------------------- severity tables

def _reference_constants(name):
    """The `c = [...]` (elastic: `alpha = [...]`) list in imagecorruptions' function `name`."""
    tree = ast.parse(inspect.getsource(getattr(reference, name)))
    target = "alpha" if name == "elastic_transform" else "c"
    node = next(n for n in ast.walk(tree) if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == target)
    return eval(compile(ast.Expression(node.value.value if isinstance(node.value, ast.Subscript) else node.value),
                        "<constants>", "eval"), {"np": np})


def _as_tuple(v):
    return tuple(_as_tuple(e) for e in v) if isinstance(v, (list, tuple, np.ndarray)) else float(v)


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_imagenet_table_is_the_reference_packages(name):
    assert _as_tuple(SEVERITY_TABLES["imagenet"][name]) == _as_tuple(_reference_constants(name))


def test_cifar_table_is_cifar10c():
    # hendrycks/robustness ImageNet-C/create_c/make_cifar_c.py (elastic: fractions of IMSIZE = 32)
    expected = {
        "gaussian_noise": [0.04, 0.06, .08, .09, .10], "shot_noise": [500, 250, 100, 75, 50],
        "impulse_noise": [.01, .02, .03, .05, .07], "speckle_noise": [.06, .1, .12, .16, .2],
        "defocus_blur": [(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)],
        "glass_blur": [(0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)],
        "motion_blur": [(6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)],
        "zoom_blur": [np.arange(1, 1.06, 0.01), np.arange(1, 1.11, 0.01), np.arange(1, 1.16, 0.01),
                      np.arange(1, 1.21, 0.01), np.arange(1, 1.26, 0.01)],
        "gaussian_blur": [.4, .6, 0.7, .8, 1],
        "snow": [(0.1, 0.2, 1, 0.6, 8, 3, 0.95), (0.1, 0.2, 1, 0.5, 10, 4, 0.9), (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
                 (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85), (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8)],
        "frost": [(1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)],
        "fog": [(.2, 3), (.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)],
        "spatter": [(0.62, 0.1, 0.7, 0.7, 0.5, 0), (0.65, 0.1, 0.8, 0.7, 0.5, 0), (0.65, 0.3, 1, 0.69, 0.5, 0),
                    (0.65, 0.1, 0.7, 0.69, 0.6, 1), (0.65, 0.1, 0.5, 0.68, 0.6, 1)],
        "brightness": [.05, .1, .15, .2, .3], "contrast": [.75, .5, .4, .3, 0.15],
        "elastic_transform": [(0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05), (0.1, 0.03, 0.03)],
        "pixelate": [0.95, 0.9, 0.85, 0.75, 0.65], "jpeg_compression": [80, 65, 58, 50, 40],
        "saturate": [(0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)],
    }
    assert set(expected) == set(CORRUPTIONS)
    for name, values in expected.items():
        assert _as_tuple(SEVERITY_TABLES["cifar"][name]) == _as_tuple(values), name


def test_families_and_groups():
    assert sum(FAMILIES.values(), ()) == CORRUPTIONS and len(CORRUPTIONS) == 19
    assert COMMON == tuple(imagecorruptions.get_corruption_names("common"))
    assert set(EXTRA) == set(imagecorruptions.get_corruption_names("validation"))
    for family in ("noise", "blur", "weather", "digital"):  # ImageNet-C's families, plus one extra each
        assert set(imagecorruptions.get_corruption_names(family)) < set(FAMILIES[family])
        assert len(set(FAMILIES[family]) & set(EXTRA)) == 1
    assert family_of("spatter") == "weather" and family_of("gaussian") is None
    grid = corruption_grid(["all"], [1, 5], [])
    assert [n for n, s, _ in grid[::2]] == list(CORRUPTIONS) and len(grid) == 38
    assert [n for n, _, _ in corruption_grid(["blur", "fog"], [2], [0.1])] == list(FAMILIES["blur"]) + ["fog", "gaussian"]
    assert len(corruption_grid(["common"], [3], [])) == 15 and len(corruption_grid(["extra"], [3], [])) == 4


# ----------------------------------------------------------------------------- against the reference

class Draws:
    """Stands in for numpy.random inside the reference: hands out our draws in its call order."""

    def __init__(self, values):
        self.values = list(values)

    def __call__(self, *args, **kwargs):
        value = self.values.pop(0)
        return value(*args, **kwargs) if callable(value) else value


def _uniform_from(u):
    """numpy's uniform(low, high, size) computed from our uniforms u, low + (high - low) * u."""
    def call(low=0.0, high=1.0, size=None):
        return low + (high - low) * u
    return call


def _fog_uniforms(u):
    pos = [0]

    def call(low=0.0, high=1.0, size=None):
        k = int(np.prod(size))
        out = low + (high - low) * u[pos[0]:pos[0] + k].reshape(size)
        pos[0] += k
        return out
    return call


def reference_draws(name, draws, i):
    """Our draws for image i, in the order and form the reference takes them from numpy.random."""
    d = {k: v[i].numpy() for k, v in draws.items()}

    def normal(z):
        return lambda loc=0.0, scale=1.0, size=None: loc + scale * z

    if name in ("gaussian_noise", "speckle_noise"):
        return {"normal": [normal(d["z"].transpose(1, 2, 0).astype(np.float64))]}
    if name == "shot_noise":
        return {"poisson": [d["counts"].transpose(1, 2, 0).astype(np.float64)]}
    if name == "motion_blur":
        return {"uniform": [float(d["angle"])]}
    if name == "snow":
        return {"normal": [normal(d["z"])], "uniform": [float(d["angle"])]}
    if name == "frost":
        return {"randint": [int(d["index"]), int(d["start"][0]), int(d["start"][1])]}
    if name == "fog":
        return {"uniform": [_fog_uniforms(d["u"])] * 64}
    if name == "spatter":
        return {"normal": [normal(d["z"])]}
    if name == "elastic_transform":
        return {"uniform": [_uniform_from(d["fields"][0]), _uniform_from(d["fields"][1])]}
    return {}


def _python_shuffle(shifts):
    """The reference's pixel-swap loop (compiled with numba there, with its own seed), taking our shifts."""
    def shuffle(d0, d1, x, c, seed=None):
        for it in range(c[2]):
            for h in range(d0 - c[1], c[1], -1):
                for w in range(d1 - c[1], c[1], -1):
                    dx, dy = int(shifts[it, h, w, 0]), int(shifts[it, h, w, 1])
                    hp, wp = h + dy, w + dx
                    x[h, w], x[hp, wp] = x[hp, wp].copy(), x[h, w].copy()
        return x
    return shuffle


def run_reference(monkeypatch, name, severity, image, calls, shifts=None):
    with monkeypatch.context() as m:
        for fn, values in calls.items():
            m.setattr(np.random, fn, Draws(values))
        if shifts is not None:
            m.setattr(reference, "_shuffle_pixels_njit_glass_blur", _python_shuffle(shifts))
        u8 = np.ascontiguousarray((image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
        out = imagecorruptions.corrupt(u8, severity, name)
    return torch.from_numpy(out.astype(np.float64)).permute(2, 0, 1)


# Our float image against the reference's uint8 (np.uint8 truncates): 0 <= 255 * ours - ref < 1,
# up to float32 rounding. Frost: its photograph is resized by OpenCV in 8-bit fixed point and here
# in float, then rounded, so a frost pixel may differ by one level (times the frost weight).
TOLERANCE = 1e-3
FROST_LEVEL = 0.75


@pytest.mark.parametrize("name", [n for n in CORRUPTIONS if n != "impulse_noise"])
def test_matches_reference(name, monkeypatch):
    x = photos(2)
    for severity in range(1, 6):
        c = corruption_param(name, severity, "imagenet")
        ours = corrupt(x, name, severity, ids(x), 3, "imagenet").double() * 255
        draw = _implementations()[name][0]
        draws = draw(x, sample_streams(3, name, severity, ids(x)), c, "imagenet") if draw else {}
        for i in range(x.shape[0]):
            shifts = draws["shifts"][i] if name == "glass_blur" else None
            ref = run_reference(monkeypatch, name, severity, x[i], reference_draws(name, draws, i), shifts)
            diff = ours[i] - ref
            slack = FROST_LEVEL if name == "frost" else 0.0
            assert diff.min() >= -TOLERANCE - slack and diff.max() < 1 + TOLERANCE + slack, (severity, i)
            if name == "frost":
                assert ((diff >= -TOLERANCE) & (diff < 1 + TOLERANCE)).float().mean() > 0.99


def test_impulse_noise_matches_reference_statistically():
    # skimage draws salt and pepper from its own generator: compare the frequencies (5 sigma bounds)
    x = torch.full((8, 3, 64, 64), 0.5)
    n = x.numel()
    for severity in range(1, 6):
        c = corruption_param("impulse_noise", severity, "imagenet")
        ours = corrupt(x, "impulse_noise", severity, ids(x), 0, "imagenet")
        ref = torch.from_numpy(random_noise(x.numpy(), mode="s&p", amount=c, rng=0))
        for out in (ours, ref):
            for value, p in ((1.0, c / 2), (0.0, c / 2)):
                assert abs((out == value).sum().item() / n - p) < 5 * (p * (1 - p) / n) ** 0.5


def test_vendored_frost_images_are_the_packages():
    package = Path(reference.__file__).parent / "frost"
    for name in weather.FROST_FILES:
        assert hashlib.sha256((weather.FROST_DIR / name).read_bytes()).digest() == \
            hashlib.sha256((package / name).read_bytes()).digest(), name


def test_frost_layers_match_opencv():
    for i, name in enumerate(weather.FROST_FILES):
        bgr = cv2.imread(str(weather.FROST_DIR / name))
        # CIFAR-10-C: resized to a fifth with INTER_LINEAR, exactly
        small = cv2.resize(bgr, (0, 0), fx=0.2, fy=0.2)[..., ::-1]
        ours = weather.frost_layers("cifar", 32, 32)[i].permute(1, 2, 0).numpy()
        assert np.array_equal(ours, small.astype(np.float32)), name
        # imagecorruptions: 1.1 x the size covering the image, INTER_CUBIC; OpenCV's 8-bit
        # fixed point against float bicubic + rounding: within one level
        big = weather.frost_layers("imagenet", 32, 32)[i].permute(1, 2, 0).numpy()
        ref = cv2.resize(bgr, (big.shape[1], big.shape[0]), interpolation=cv2.INTER_CUBIC)[..., ::-1]
        assert np.abs(big - ref).max() <= 1 and (big == ref).mean() > 0.99, name


def test_cifar_elastic_matches_opencv_and_scipy():
    # CIFAR-10-C's recipe with OpenCV and scipy: affine warp of jittered points, then a smoothed
    # random displacement field, bilinear resampling with reflected borders
    x = photos(3)
    H = W = 32
    for severity in range(1, 6):
        c = corruption_param("elastic_transform", severity, "cifar")
        alpha, sigma, jitter = (H * f for f in c)
        ours = corrupt(x, "elastic_transform", severity, ids(x), 1, "cifar")
        draws = _implementations()["elastic_transform"][0](
            x, sample_streams(1, "elastic_transform", severity, ids(x)), c, "cifar")
        for i in range(x.shape[0]):
            img = x[i].permute(1, 2, 0).numpy().astype(np.float32)
            centre = np.float32((H, W)) // 2
            side = min(H, W) // 3
            pts1 = np.float32([centre + side, [centre[0] + side, centre[1] - side], centre - side])
            pts2 = pts1 + (-jitter + 2 * jitter * draws["affine"][i].numpy()).astype(np.float32)
            warped = cv2.warpAffine(img, cv2.getAffineTransform(pts1, pts2), (W, H), borderMode=cv2.BORDER_REFLECT_101)
            dx, dy = ((sk_gaussian(-1 + 2 * draws["fields"][i, k].numpy(), sigma, mode="reflect", truncate=3) * alpha)
                      .astype(np.float32) for k in (0, 1))
            gx, gy, gz = np.meshgrid(np.arange(W), np.arange(H), np.arange(3))
            coords = [(gy + dy[..., None]).ravel(), (gx + dx[..., None]).ravel(), gz.ravel()]
            ref = np.clip(ndi.map_coordinates(warped, coords, order=1, mode="reflect").reshape(H, W, 3), 0, 1)
            assert np.abs(ours[i].permute(1, 2, 0).numpy() - ref).max() < 1e-4, (severity, i)


# ----------------------------------------------------------------------------- properties

@pytest.mark.parametrize("table", TABLES)
@pytest.mark.parametrize("name", CORRUPTIONS)
def test_changes_image_and_stays_in_range(name, table):
    x = photos(3)
    extreme = torch.stack([torch.zeros(3, 32, 32), torch.ones(3, 32, 32),
                           torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))])
    for severity in range(1, 6):
        out = corrupt(x, name, severity, ids(x), 0, table)
        # every image: some pixel moves by more than one 8-bit level
        assert ((out - x).abs().amax(dim=(1, 2, 3)) > 1 / 255).all(), severity
        for batch in (out, corrupt(extreme, name, severity, ids(extreme), 0, table)):
            assert torch.isfinite(batch).all() and batch.min() >= 0 and batch.max() <= 1


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_deterministic_per_seed_and_image(name):
    x = photos(4)
    i = torch.tensor([7, 3, 11, 5])
    full = corrupt(x, name, 3, i, 5, "cifar")
    assert torch.equal(full, corrupt(x, name, 3, i, 5, "cifar"))
    # the same image and id give the same result in any batch, in any position
    assert torch.equal(full[1:3], corrupt(x[1:3], name, 3, i[1:3], 5, "cifar"))
    assert torch.equal(full.flip(0), corrupt(x.flip(0), name, 3, i.flip(0), 5, "cifar"))
    other_seed = corrupt(x, name, 3, i, 6, "cifar")
    if name in RANDOM:  # another seed (or id) draws anew; the others have nothing to draw
        assert not torch.equal(full, other_seed)
        assert not torch.equal(full[:1], corrupt(x[:1], name, 3, i[1:2], 5, "cifar"))
    else:
        assert torch.equal(full, other_seed)


def _mad(out, x):  # mean absolute change of the pixels
    return (out - x).abs().mean().item()


def _sharpness_loss(out, x):  # share of the mean absolute gradient lost
    def grad(v):
        return (v.diff(dim=-1).abs().mean() + v.diff(dim=-2).abs().mean()).item()
    return 1 - grad(out) / grad(x)


def _content_loss(out, x):  # 1 - Pearson correlation with the clean image (a flat image: 1), mean over images
    a, b = out.flatten(1) - out.flatten(1).mean(1, keepdim=True), x.flatten(1) - x.flatten(1).mean(1, keepdim=True)
    norm = a.norm(dim=1) * b.norm(dim=1)
    return (1 - torch.where(norm > 0, (a * b).sum(1) / norm.clamp(min=1e-30), torch.zeros_like(norm))).mean().item()


def _whitening(out, x):  # mean brightness gained
    return (out.mean() - x.mean()).item()


def _saturation_change(out, x):
    return (rgb_to_hsv(out)[:, 1] - rgb_to_hsv(x)[:, 1]).abs().mean().item()


def _non_affine_shift(out, x):  # RMS of the displacement left after the best affine fit, in px (ramp images)
    H, W = x.shape[-2:]
    yy, xx = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij")
    inner = (slice(None), slice(6, H - 6), slice(6, W - 6))
    basis = torch.stack([xx[inner[1:]].flatten(), yy[inner[1:]].flatten(), torch.ones(xx[inner[1:]].numel(),
                                                                                         dtype=torch.float64)], 1)
    rms = []
    for img in out.double():
        shift = torch.stack([((img[0] - 0.25) * 64 - xx)[inner[1:]].flatten(), ((img[1] - 0.25) * 64 - yy)[inner[1:]].flatten()], 1)
        rest = shift - basis @ torch.linalg.lstsq(basis, shift).solution
        rms.append(rest.pow(2).mean().sqrt())
    # median over images: an image whose (CIFAR-10-C) affine jitter reaches past the border inside
    # the measured region reflects there, a non-affine shift that is not the elastic field's
    return torch.stack(rms).median().item()


def _ramps(n):  # x / 64 + 1/4, y / 64 + 1/4, 1/2: bilinear resampling reads the sampled position back
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    return torch.stack([xx / 64 + 0.25, yy / 64 + 0.25, torch.full_like(xx, 0.5)])[None].repeat(n, 1, 1, 1)


# What grows with severity, and why it must:
#   noise                 the noise std / rate / flip probability grows: pixels move further (mad)
#   blurs, pixelate       a wider kernel (more zoom factors, fewer pixels) removes more detail: the
#                         mean gradient falls (sharpness loss)
#   jpeg                  a lower quality quantises coarser: pixels move further (mad)
#   glass blur            ImageNet-C: more blur and further swaps: sharpness loss. CIFAR-10-C is not
#                         ordered in one measure: severity 4 blurs less than 3 (sigma 0.25 vs 0.4)
#                         but swaps twice; so 1-2-3 and 4-5 (same swaps, more blur) in sharpness
#                         loss, 3-4 (more swaps) in content loss
#   snow                  a white layer (and its copy rotated by 180 degrees) is added to an image
#                         brightened towards 1.5 grey + 0.5: more and brighter flakes, less of the
#                         original image kept (whitening: mean brightness gained, on images at half
#                         brightness so that clipping at 1 does not hide it)
#   spatter, fog          a stronger layer (more liquid, more fog) replaces more of the image
#                         (content loss: 1 - correlation with the clean image). Spatter is water at
#                         severities 1-3 (a transparent tint along the liquid's edges) and mud at 4-5
#                         (opaque blobs): the growth holds within each kind
#   frost                 frost weight / image weight grows (on darkened images, so that clipping
#                         at 1 does not hide it): content loss
#   brightness, contrast  HSV value + c, and (x - mean) * c: every pixel moves further (mad)
#   elastic               the non-affine displacement grows (CIFAR-10-C shrinks its affine jitter
#                         at the same time, so only this part is monotone), read off ramp images
#   saturate              two-sided by design: severities 1-2 lower the saturation, 3-5 raise it;
#                         the change of HSV saturation grows within each side
# Random corruptions are compared at equal draws (those of severity 1, reused), so that the test
# sees the severity and not the resampling; shot noise draws from the severity's own rate.
MEASURES = {**{n: _mad for n in FAMILIES["noise"]},
            **{n: _sharpness_loss for n in ("defocus_blur", "glass_blur", "motion_blur", "zoom_blur", "gaussian_blur",
                                            "pixelate")},
            "jpeg_compression": _mad, "snow": _whitening, "spatter": _content_loss, "fog": _content_loss,
            "frost": _content_loss, "brightness": _mad, "contrast": _mad, "elastic_transform": _non_affine_shift,
            "saturate": _saturation_change}
# CIFAR-10-C motion blur: (radius 6, sigma 2) and (8, 2) weigh the 7th..9th shifted copies by
# exp(-36/8) / sum ~ 1e-9 only, so severities 3 and 4 are equal up to that
EQUAL = {("cifar", "motion_blur"): {(3, 4)}}
OTHER_MEASURE = {("cifar", "glass_blur", 3, 4): _content_loss}


@pytest.mark.parametrize("table", TABLES)
@pytest.mark.parametrize("name", CORRUPTIONS)
def test_grows_with_severity(name, table):
    # snow: 16 draws (the 4 photos, each with 4 ids): at 32 px ImageNet-C's zoom 4 leaves 8 x 8 random
    # values per image, too few for one draw per photo to show the growth reliably
    x = {"frost": photos(4) * 0.25, "snow": photos(4).repeat(4, 1, 1, 1) * 0.5,
         "elastic_transform": _ramps(4)}.get(name, photos(4))
    draw, apply = _implementations()[name]
    outs = []
    for severity in range(1, 6):
        c = corruption_param(name, severity, table)
        if draw is None or name == "shot_noise":
            outs.append(corrupt(x, name, severity, ids(x), 0, table))
        else:
            draws = draw(x, sample_streams(0, name, 1, ids(x)), c, table)
            outs.append(apply(x.float(), c, draws, table).float().clamp(0, 1))
    pairs = {"saturate": [(1, 2), (3, 4), (4, 5)], "spatter": [(1, 2), (2, 3), (4, 5)]}.get(
        name, [(s, s + 1) for s in range(1, 5)])
    for a, b in pairs:
        measure = OTHER_MEASURE.get((table, name, a, b), MEASURES[name])
        low, high = measure(outs[a - 1], x), measure(outs[b - 1], x)
        if (a, b) in EQUAL.get((table, name), ()):
            assert high == pytest.approx(low, abs=1e-6), (a, b, low, high)
        else:
            assert high > low, (a, b, low, high)


def test_grey_images_are_corrupted_as_grey_rgb():
    x = photos(2).mean(1, keepdim=True)
    for name in ("fog", "frost", "spatter", "jpeg_compression"):
        grey = corrupt(x, name, 4, ids(x), 0, "cifar")
        rgb = corrupt(x.expand(-1, 3, -1, -1), name, 4, ids(x), 0, "cifar")
        assert grey.shape == x.shape
        assert torch.allclose(grey[:, 0], 0.299 * rgb[:, 0] + 0.587 * rgb[:, 1] + 0.114 * rgb[:, 2], atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_dtype_kept_input_untouched(dtype):
    x = photos(2).to(dtype)
    before = x.clone()
    for name in CORRUPTIONS:
        out = corrupt(x, name, 2, ids(x), 0, "cifar")
        assert out.dtype == dtype and out.shape == x.shape
    assert torch.equal(x, before)


def test_bad_channels():
    with pytest.raises(NVPTError, match="3-channel"):
        corrupt(torch.rand(1, 4, 32, 32), "snow", 1, torch.arange(1), 0)


def test_time_suite_accounts_for_every_set(monkeypatch):
    import nvpt.robustness.speed as speed
    from nvpt.robustness.speed import suite_report, time_suite

    calls = []
    real_corrupt = speed.corrupt
    monkeypatch.setattr(speed, "corrupt", lambda images, name, *a, **kw: calls.append(name) or real_corrupt(
        images, name, *a, **kw))
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 4))
    batches = [(photos(2), torch.arange(2)), (photos(3)[2:], torch.arange(2, 3))]
    sets = corruption_grid(["fog", "noise"], [1, 4], [])
    result = time_suite(model, batches, lambda v: v, torch.device("cpu"), sets, "cifar", 0)
    assert result["images"] == 3 and result["batches"] == 2
    assert list(result["sets"]) == ["clean"] + [f"{n}@{s}" for n, s, _ in sets]
    assert result["corruptions"]["fog"]["sets"] == 2 and result["families"]["noise"]["sets"] == 8
    assert set(result["families"]) == {"noise", "weather"} and result["total"]["sets"] == 11
    # the clean set corrupts nothing (a count, not a time: timings on a shared machine are no test), every
    # corrupted set corrupts each of the 2 batches once
    assert len(calls) == 2 * len(sets) and "clean" not in calls and result["total"]["model_s"] > 0
    assert result["total"]["total_s"] == pytest.approx(result["total"]["corrupt_s"] + result["total"]["model_s"])
    assert "family weather" in suite_report(result) and ("PASS" in suite_report(result)) == result["pass"]


def test_benchmark_tool_times_the_suite(tmp_path, capsys):
    import json

    from conftest import load_tool

    tool = load_tool("benchmark")
    config = tmp_path / "tiny.yaml"
    config.write_text(f"""_base_: {ROOT / 'configs' / 'demo' / 'base.yaml'}
model:
  kwargs: "{{patch_size: 8, depth: 1, embed_dim: 32, num_heads: 2}}"
data:
  train_per_class: 2
  test_per_class: 2
  crop_size: 32
  eval_batch_size: 16
eval:
  severities: [1, 5]
""")
    out = tmp_path / "suite.json"
    threads = torch.get_num_threads()
    try:
        assert tool.main([str(config), "--corruptions", "blur", "contrast", "--threads", "1", "--out", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    result = json.loads(out.read_text())
    assert result["images"] == 40 and result["batches"] == 3 and result["table"] == "cifar"
    assert list(result["corruptions"]) == list(FAMILIES["blur"]) + ["contrast"]
    assert result["total"]["sets"] == 1 + 6 * 2 and "family blur" in capsys.readouterr().out


@pytest.mark.parametrize("overrides,lengths", [
    ([], {"spike_nvpt": 32, "vpt_deep": 8}),  # the demo's recipes (docs/results.md's table)
    (["prompt.length=8"], {"spike_nvpt": 8, "vpt_deep": 8}),  # matched lengths: the override beats the recipe
    (["prompt.length=32"], {"spike_nvpt": 32, "vpt_deep": 32}),
])
def test_results_config_plans_the_demo_recipes_on_the_full_suite(tmp_path, overrides, lengths):
    from nvpt.comparison import plan_comparison
    from nvpt.robustness.evaluate import robustness_sets

    config = Path(__file__).parent.parent / "configs/experiments/textures_corruptions.yaml"
    jobs = plan_comparison(config, overrides + [f"output_dir={tmp_path}"], ["spike_nvpt", "vpt_deep"], 3)
    assert len(jobs) == 6 and {job.action for job in jobs} == {"train"} and not any(tmp_path.iterdir())
    for job in jobs:
        assert job.cfg.prompt.method == job.method and job.cfg.prompt.length == lengths[job.method]
        sets = robustness_sets(job.cfg.eval)
        assert len(sets) == 19 * 5 and {name for name, _, _ in sets} == set(CORRUPTIONS)
        assert job.cfg.eval.corruption_table == "cifar" and job.cfg.data.name == "textures"
