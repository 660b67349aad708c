"""Noise corruptions: formulas against their definitions, seeding, validation.
(The other 15 corruptions: tests/test_corruption_suite.py.)"""
import os
import subprocess
import sys

import pytest
import torch

from nvpt.errors import NVPTError
from nvpt.robustness.corruptions import (
    FAMILIES,
    SEVERITY_TABLES,
    corrupt,
    corruption_grid,
    corruption_param,
    resolve_table,
)

torch.set_num_threads(1)

IDS = torch.arange(16)
NOISE = FAMILIES["noise"]


def grey(value=0.5, shape=(16, 3, 64, 64), dtype=torch.float32):
    return torch.full(shape, value, dtype=dtype)


def test_tables_are_the_published_constants():
    # hendrycks/robustness: imagenet_c/corruptions.py and create_c/make_cifar_c.py
    assert {n: SEVERITY_TABLES["imagenet"][n] for n in NOISE} == {
        "gaussian_noise": (0.08, 0.12, 0.18, 0.26, 0.38),
        "shot_noise": (60, 25, 12, 5, 3),
        "impulse_noise": (0.03, 0.06, 0.09, 0.17, 0.27),
        "speckle_noise": (0.15, 0.2, 0.35, 0.45, 0.6),
    }
    assert {n: SEVERITY_TABLES["cifar"][n] for n in NOISE} == {
        "gaussian_noise": (0.04, 0.06, 0.08, 0.09, 0.10),
        "shot_noise": (500, 250, 100, 75, 50),
        "impulse_noise": (0.01, 0.02, 0.03, 0.05, 0.07),
        "speckle_noise": (0.06, 0.1, 0.12, 0.16, 0.2),
    }
    for name in NOISE:
        for s in range(1, 6):
            assert corruption_param(name, s, "imagenet") == SEVERITY_TABLES["imagenet"][name][s - 1]
            assert corruption_param(name, s, "imagenet") != corruption_param(name, s, "cifar")


def test_resolve_table():
    assert resolve_table("auto", 28) == "cifar"
    assert resolve_table("auto", 63) == "cifar"
    assert resolve_table("auto", 64) == "imagenet"
    assert resolve_table("auto", 224) == "imagenet"
    assert resolve_table("cifar", 224) == "cifar"
    assert resolve_table("imagenet", 32) == "imagenet"


@pytest.mark.parametrize("table,severity", [("imagenet", 1), ("imagenet", 2)] + [("cifar", s) for s in range(1, 6)])
def test_gaussian_noise_std_is_table_constant(table, severity):
    # at grey 0.5 and c <= 0.12 clipping (> 4 sigma) is negligible
    x = grey()
    c = corruption_param("gaussian_noise", severity, table)
    delta = corrupt(x, "gaussian_noise", severity, IDS, seed=0, table=table) - x
    assert delta.std().item() == pytest.approx(c, rel=0.03)
    assert abs(delta.mean().item()) < 0.01 * c


def test_gaussian_noise_is_standard_normal_times_c():
    # Same (seed, severity, ids) -> same standard normal draw, scaled by each table's c.
    x = grey()
    for s in range(1, 6):
        d_in = corrupt(x, "gaussian_noise", s, IDS, 0, "imagenet") - x
        d_ci = corrupt(x, "gaussian_noise", s, IDS, 0, "cifar") - x
        inside = (d_in.abs() < 0.49) & (d_ci.abs() > 0.01)  # unclipped, not tiny
        ratio = d_in[inside] / d_ci[inside]
        expect = SEVERITY_TABLES["imagenet"]["gaussian_noise"][s - 1] / SEVERITY_TABLES["cifar"]["gaussian_noise"][s - 1]
        assert torch.allclose(ratio, torch.full_like(ratio, expect), rtol=1e-4)


def test_plain_gaussian_has_given_sigma():
    x = grey()
    delta = corrupt(x, "gaussian", None, IDS, seed=3, sigma=0.1) - x
    assert delta.std().item() == pytest.approx(0.1, rel=0.03)


def test_speckle_std_proportional_to_pixel():
    x = grey(0.2)
    x[:, :, :, 32:] = 0.4
    c = corruption_param("speckle_noise", 1, "imagenet")
    delta = corrupt(x, "speckle_noise", 1, IDS, seed=0) - x
    assert delta[..., :32].std().item() == pytest.approx(0.2 * c, rel=0.03)
    assert delta[..., 32:].std().item() == pytest.approx(0.4 * c, rel=0.03)
    assert torch.equal(corrupt(grey(0.0), "speckle_noise", 5, IDS, 0), grey(0.0))  # black stays black


@pytest.mark.parametrize("table,severity", [("imagenet", 1), ("imagenet", 2), ("cifar", 1), ("cifar", 5)])
def test_shot_noise_mean_and_variance(table, severity):
    x = grey(0.3)
    c = corruption_param("shot_noise", severity, table)
    out = corrupt(x, "shot_noise", severity, IDS, seed=0, table=table)
    assert out.mean().item() == pytest.approx(0.3, abs=0.002)
    assert out.var().item() == pytest.approx(0.3 / c, rel=0.05)
    counts = out.double() * c  # Poisson counts / c
    assert torch.allclose(counts, counts.round(), atol=1e-3)


def test_impulse_noise_fraction_and_per_element():
    x = grey(0.5)
    c = corruption_param("impulse_noise", 5, "imagenet")
    out = corrupt(x, "impulse_noise", 5, IDS, seed=0)
    n = out.numel()
    salt, pepper, kept = (out == 1).sum().item() / n, (out == 0).sum().item() / n, (out == 0.5).sum().item() / n
    assert salt + pepper + kept == pytest.approx(1.0)
    assert salt + pepper == pytest.approx(c, abs=0.005)
    assert salt == pytest.approx(c / 2, abs=0.005)
    assert pepper == pytest.approx(c / 2, abs=0.005)
    # channels flip independently (per element, not per pixel): all 3 flipped ~ c^3
    all_flipped = (out != 0.5).all(dim=1).float().mean().item()
    assert all_flipped == pytest.approx(c**3, abs=0.005)


@pytest.mark.parametrize("name,sigma", [(n, None) for n in NOISE] + [("gaussian", 1.0)])
def test_output_clipped(name, sigma):
    x = torch.rand(4, 3, 32, 32)
    x[:, 0] = 0.0
    x[:, 1] = 1.0
    out = corrupt(x, name, None if sigma else 5, torch.arange(4), 0, sigma=sigma)
    assert out.min().item() >= 0.0 and out.max().item() <= 1.0
    if name in ("gaussian_noise", "gaussian"):
        assert (out == 0).any() and (out == 1).any()


@pytest.mark.parametrize("name", NOISE)
def test_deterministic_and_batch_independent(name):
    x = torch.rand(8, 3, 16, 16)
    ids = torch.arange(100, 108)
    full = corrupt(x, name, 3, ids, seed=7)
    assert torch.equal(full, corrupt(x, name, 3, ids, seed=7))
    chunks = torch.cat([corrupt(x[i:i + 3], name, 3, ids[i:i + 3], seed=7) for i in range(0, 8, 3)])
    assert torch.equal(full, chunks)
    perm = torch.randperm(8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(full[perm], corrupt(x[perm], name, 3, ids[perm], seed=7))
    assert torch.equal(full[:2], corrupt(x[:2], name, 3, [100, 101], seed=7))  # ids as a list


@pytest.mark.parametrize("name", NOISE)
def test_noise_changes_with_ids_seed_severity(name):
    x = grey(0.5, (2, 3, 16, 16))
    base = corrupt(x, name, 3, torch.tensor([0, 1]), seed=0)
    assert not torch.equal(base[0], base[1])  # two samples
    assert not torch.equal(base, corrupt(x, name, 3, torch.tensor([2, 3]), seed=0))
    assert not torch.equal(base, corrupt(x, name, 3, torch.tensor([0, 1]), seed=1))
    other = corrupt(x, name, 4, torch.tensor([0, 1]), seed=0)
    assert not torch.equal(base, other)


def test_gaussian_sigma_changes_noise():
    x = grey(0.5, (2, 3, 16, 16))
    a = corrupt(x, "gaussian", None, torch.tensor([0, 1]), 0, sigma=0.1) - x
    b = corrupt(x, "gaussian", None, torch.tensor([0, 1]), 0, sigma=0.2) - x
    assert not torch.allclose(a * 2, b, atol=1e-3)  # its own draw, not the same draw rescaled


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_dtype_and_device_preserved(dtype):
    x = torch.rand(2, 3, 8, 8).to(dtype)
    before = x.clone()
    for name in NOISE:
        out = corrupt(x, name, 2, torch.arange(2), 0)
        assert out.dtype == dtype and out.device == x.device and out.shape == x.shape
    assert torch.equal(x, before)  # input untouched


def test_empty_batch():
    out = corrupt(torch.rand(0, 3, 8, 8), "shot_noise", 1, torch.arange(0), 0)
    assert out.shape == (0, 3, 8, 8)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cpu_and_cuda_see_same_images():
    x = torch.rand(4, 3, 32, 32)
    for name in NOISE:
        cpu = corrupt(x, name, 5, torch.arange(4), 0)
        gpu = corrupt(x.cuda(), name, 5, torch.arange(4).cuda(), 0).cpu()
        if name == "impulse_noise":  # uniforms and comparisons: exact on both
            assert torch.equal(cpu, gpu)
        elif name == "shot_noise":  # a count may differ by one where log/lgamma round differently
            assert ((cpu - gpu).abs() < 1e-6).float().mean() > 0.999
        else:  # normals: log, sin and cos may differ in the last bit
            torch.testing.assert_close(cpu, gpu, rtol=0, atol=1e-5)


def test_corruption_grid_order():
    grid = corruption_grid(["shot_noise", "gaussian_noise"], [1, 3], [0.05, 0.1])
    assert grid == [("shot_noise", 1, None), ("shot_noise", 3, None), ("gaussian_noise", 1, None),
                    ("gaussian_noise", 3, None), ("gaussian", None, 0.05), ("gaussian", None, 0.1)]
    assert corruption_grid([], [], [0.1]) == [("gaussian", None, 0.1)]
    assert corruption_grid(None, None, None) == []


X = torch.rand(2, 3, 8, 8)
ID2 = torch.arange(2)


@pytest.mark.parametrize("call,expect", [
    (lambda: corrupt(X, "fogg", 1, ID2, 0), "valid: gaussian_noise, shot_noise, impulse_noise, speckle_noise, defocus_blur"),
    (lambda: corrupt(X, "shot_noise", 0, ID2, 0), "1, 2, 3, 4, 5"),
    (lambda: corrupt(X, "shot_noise", 6, ID2, 0), "1, 2, 3, 4, 5"),
    (lambda: corrupt(X, "shot_noise", None, ID2, 0), "1, 2, 3, 4, 5"),
    (lambda: corrupt(X, "shot_noise", 2.0, ID2, 0), "1, 2, 3, 4, 5"),
    (lambda: corrupt(X, "shot_noise", True, ID2, 0), "1, 2, 3, 4, 5"),
    (lambda: corrupt(X, "shot_noise", 2, ID2, 0, sigma=0.1), "not sigma"),
    (lambda: corrupt(X, "gaussian", None, ID2, 0), "needs sigma"),
    (lambda: corrupt(X, "gaussian", 2, ID2, 0, sigma=0.1), "not a severity"),
    (lambda: corrupt(X, "gaussian", None, ID2, 0, sigma=0.0), "> 0"),
    (lambda: corrupt(X, "gaussian", None, ID2, 0, sigma=float("nan")), "> 0"),
    (lambda: corrupt(X, "shot_noise", 1, ID2, 0, table="tiny"), "valid: imagenet, cifar"),
    (lambda: corrupt(X, "shot_noise", 1, ID2, 0, table="auto"), "resolve_table"),
    (lambda: corrupt(X, "shot_noise", 1, ID2, 0.5), "seed"),
    (lambda: corrupt(X[0], "shot_noise", 1, ID2, 0), "[B, C, H, W]"),
    (lambda: corrupt((X * 255).to(torch.uint8), "shot_noise", 1, ID2, 0), "float tensor"),
    (lambda: corrupt(X, "shot_noise", 1, torch.arange(3), 0), "shape [2]"),
    (lambda: corrupt(X, "shot_noise", 1, torch.zeros(2), 0), "integer ids"),
    (lambda: corrupt(X, "shot_noise", 1, torch.ones(2, dtype=torch.bool), 0), "integer ids"),
    (lambda: corruption_param("gaussian", 1, "imagenet"), "no severity table"),
    (lambda: corruption_param("blur", 1, "imagenet"), "valid:"),
    (lambda: resolve_table("small", 32), "valid: auto, imagenet, cifar"),
    (lambda: resolve_table("auto", 0), "positive integer"),
    (lambda: corruption_grid(["fogg"], [1], []), "valid: gaussian_noise, shot_noise"),
    (lambda: corruption_grid(["fogg"], [1], []), "or a group: all, common, extra, noise, blur, weather, digital"),
    (lambda: corruption_grid(["noise", "shot_noise"], [1], []), "'shot_noise' twice"),
    (lambda: corrupt(torch.rand(2, 2, 8, 8), "fog", 1, ID2, 0), "3-channel"),
    (lambda: corruption_grid(["gaussian"], [1], []), "gaussian_stds"),
    (lambda: corruption_grid(["shot_noise"], [0], []), "1, 2, 3, 4, 5"),
    (lambda: corruption_grid(["shot_noise"], [1], [-0.1]), "> 0"),
    (lambda: corruption_grid(["shot_noise", "shot_noise"], [1], []), "twice"),
    (lambda: corruption_grid(["shot_noise"], [1, 1], []), "twice"),
    (lambda: corruption_grid([], [], [0.1, 0.1]), "twice"),
    (lambda: corruption_grid(["shot_noise"], [], []), "at least one severity"),
])
def test_errors_are_one_line_and_list_choices(call, expect):
    with pytest.raises(NVPTError) as err:
        call()
    msg = str(err.value)
    assert "\n" not in msg and expect in msg


def test_same_images_in_a_fresh_process():
    # Seeds come from hashlib, not Python's per-process salted hash().
    code = ("import torch; torch.set_num_threads(1); from nvpt.robustness.corruptions import corrupt; "
            "x = torch.linspace(0, 1, 2 * 3 * 8 * 8).reshape(2, 3, 8, 8); "
            "print(repr(corrupt(x, 'speckle_noise', 2, torch.tensor([5, 9]), 11).double().sum().item()))")
    x = torch.linspace(0, 1, 2 * 3 * 8 * 8).reshape(2, 3, 8, 8)
    here = repr(corrupt(x, "speckle_noise", 2, torch.tensor([5, 9]), 11).double().sum().item())
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "OMP_NUM_THREADS": "1"}
        out = subprocess.run([sys.executable, "-c", code], env=env, cwd=os.path.dirname(os.path.dirname(__file__)),
                             capture_output=True, text=True, check=True)
        assert out.stdout.strip() == here
