"""The corruptions and the models on a (fake) CUDA device, and the counter-based streams behind
the corruptions (nvpt/robustness/rng.py): device-clean, batch-independent, exact integers,
the right distributions. The fake device: tests/fake_cuda.py."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from fake_cuda import fake_cuda, is_host_read
from nvpt.config import CORRUPTIONS
from nvpt.robustness import rng
from nvpt.robustness.corruptions import GAUSSIAN, corrupt, sample_streams

torch.set_num_threads(1)
SIZE = 32
SETS = [(n, None) for n in CORRUPTIONS] + [(GAUSSIAN, 0.1)]
CPU_PATH = {"jpeg_compression"}  # Pillow's JPEG codec: the documented CPU round trip


def _args(name, sigma, severity):
    return (None, sigma) if name == GAUSSIAN else (severity, None)


# ----------------------------------------------------------------------------- fake CUDA

# every set at severity 5 (CIFAR-10-C table), and the code paths another table or severity takes
CASES = ([(n, s, "cifar", None if n == GAUSSIAN else 5) for n, s in SETS]
         + [("spatter", None, "cifar", 1), ("elastic_transform", None, "imagenet", 2), ("frost", None, "imagenet", 3),
            ("glass_blur", None, "imagenet", 1), ("defocus_blur", None, "imagenet", 5)])


@pytest.mark.parametrize("name,sigma,table,severity", CASES)
def test_every_set_runs_on_a_fake_cuda_device(name, sigma, table, severity):
    """No device mismatch, no host read, no CPU tensor of an image's size (H * W elements) per
    batch. The first call of frost builds its layers on the device from the photographs (host
    constants); the second call, the steady state, is recorded."""
    ids = torch.tensor([4, 9])  # sample ids come from the loader, on the CPU
    try:
        with fake_cuda(limit=SIZE * SIZE) as cpu_work:
            x = torch.empty(2, 3, SIZE, SIZE, device="cuda")
            if name == "frost":
                cpu_work.active = False
                corrupt(x, name, severity, ids, 0, table, sigma=sigma)
                cpu_work.active = True
            out = corrupt(x, name, severity, ids, 0, table, sigma=sigma)
    except Exception as error:  # noqa: BLE001 - the kind of error is the point
        if name in CPU_PATH and is_host_read(error):
            return  # reads the batch back for Pillow: allowed for jpeg_compression only
        raise
    assert name not in CPU_PATH, "jpeg_compression is documented to read the batch back; update CPU_PATH"
    assert out.device.type == "cuda" and out.shape == x.shape and out.dtype == x.dtype
    assert not cpu_work.hits, cpu_work.hits[:5]


def test_grey_images_and_half_precision_on_a_fake_cuda_device():
    with fake_cuda(limit=SIZE * SIZE) as cpu_work:
        for name in ("spatter", "snow", "shot_noise"):
            grey = corrupt(torch.empty(2, 1, SIZE, SIZE, device="cuda", dtype=torch.bfloat16), name, 5,
                           torch.tensor([1, 2]), 3, "cifar")
            assert grey.shape == (2, 1, SIZE, SIZE) and grey.device.type == "cuda" and grey.dtype == torch.bfloat16
    assert not cpu_work.hits, cpu_work.hits[:5]


@pytest.mark.parametrize("method", ["linear", "full", "vpt_shallow", "vpt_deep", "spike_nvpt"])
def test_one_eval_forward_of_each_method_on_a_fake_cuda_device(method, make_cfg):
    from nvpt.models import build_model

    model = build_model(make_cfg(f"prompt.method={method}")).eval()
    with fake_cuda(limit=SIZE * SIZE) as cpu_work:
        cpu_work.active = False
        model = model.to("cuda")  # the weights' one upload
        cpu_work.active = True
        with torch.no_grad():
            logits = model(torch.empty(2, 3, SIZE, SIZE, device="cuda"))
    assert logits.shape == (2, 5) and logits.device.type == "cuda"
    assert not cpu_work.hits, cpu_work.hits[:5]


def test_the_evaluation_pass_runs_on_a_fake_cuda_device(make_cfg):
    """The hot path of every evaluation (nvpt.robustness.evaluate.count_correct: move, uint8 -> float, corrupt,
    normalise, classify, count) on a fake CUDA device: no device mismatch, no host read, no image-sized CPU work."""
    from nvpt.engine.loop import Normalize
    from nvpt.models import build_model
    from nvpt.robustness.evaluate import Scorer, count_correct

    model = build_model(make_cfg("prompt.method=spike_nvpt")).eval().deploy()  # runs are evaluated deployed
    sets = [("gaussian_noise", 3, None), ("spatter", 2, None), ("gaussian", None, 0.1)]
    with fake_cuda(limit=SIZE * SIZE) as cpu_work:
        cpu_work.active = False
        scorer = Scorer(model.to("cuda"), Normalize([0.5] * 3, [0.5] * 3).to("cuda"))  # the one upload
        loader = [(torch.zeros(2, 3, SIZE, SIZE, dtype=torch.uint8), torch.tensor([0, 1]), torch.tensor([4, 5]))]
        cpu_work.active = True  # a loader batch arrives on the host as uint8; everything after is on the device
        correct, seen = count_correct([scorer], loader, torch.device("cuda"), sets, 0, "cifar")
    assert correct.shape == (1, 4) and correct.device.type == "cuda" and seen == 2
    upload = ("prim.device.default in cpu", "aten._to_copy.default in cpu")  # the uint8 batch's one move to the device
    assert [h for h in cpu_work.hits if not h.startswith(upload)] == [], cpu_work.hits[:5]


# ----------------------------------------------------------------------------- batch independence

@pytest.mark.parametrize("name,sigma", SETS)
def test_a_sample_does_not_depend_on_its_batch(name, sigma, monkeypatch):
    x = torch.rand(5, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    ids = torch.tensor([7, 3, 11, 5, 2])
    severity, sig = _args(name, sigma, 4)

    def run(i, chunk=None):
        if chunk:
            monkeypatch.setattr(rng, "CPU_CHUNK", chunk)
        out = corrupt(x[i], name, severity, ids[i], 9, "cifar", sigma=sig)
        monkeypatch.setattr(rng, "CPU_CHUNK", 1 << 16)
        return out

    full = run(torch.arange(5))
    perm = torch.tensor([3, 0, 4, 2, 1])
    assert torch.equal(run(perm), full[perm])  # shuffled
    assert torch.equal(torch.cat([run(torch.arange(2)), run(torch.arange(2, 5))]), full)  # split
    for i in range(5):  # alone, and in a batch of three with the others repeated
        assert torch.equal(run(torch.tensor([i]))[0], full[i])
        assert torch.equal(run(torch.tensor([(i + 1) % 5, i, (i + 2) % 5]))[1], full[i])
    assert torch.equal(run(torch.arange(5), chunk=700), full)  # pieces of the streams on the CPU


# ----------------------------------------------------------------------------- the streams

def _python_word(key, sample_id, stream, n):
    """The reference: rng.py's word n of a stream, in Python integers."""
    m = rng.mix_int
    lo, hi = sample_id & rng.MASK, (sample_id >> 32) & rng.MASK
    s = m(m(lo ^ key[0]) ^ hi ^ key[1])
    a = s ^ m(0x9E3779B9 * (stream + 1))
    g = (m(a ^ key[2]) & 0x7FFFFFFF) | 1
    b = m(a ^ (key[2] ^ 0x5BD1E995))
    return m((n * g + b) & rng.MASK)


def test_words_are_exact_integers():
    words = torch.randint(0, 2 ** 32, (5000,), generator=torch.Generator().manual_seed(0), dtype=torch.int64)
    assert rng.mix(words).tolist() == [rng.mix_int(w) for w in words.tolist()]
    assert sorted(rng.mix(torch.arange(1 << 12)).tolist()) != list(range(1 << 12))  # it scrambles
    key = rng.set_key(3, "snow", "severity=2")
    ids = torch.tensor([0, 17, 2 ** 40 + 5])
    streams = rng.SampleStreams(key, ids, "cpu")
    got = streams.words(4, 50, start=1000)
    for row, i in zip(got.tolist(), ids.tolist()):
        assert row == [_python_word(key, i, 4, n) for n in range(1000, 1050)]
    # uniforms: the top 24 bits, exact in float32
    u = streams.uniform(4, (1050,))[:, 1000:]
    assert torch.equal(u, (got >> 8).float() / 2 ** 24) and u.min() >= 0 and u.max() < 1


def test_streams_are_keyed_by_every_part():
    ids = torch.arange(3)
    base = sample_streams(1, "shot_noise", 2, ids).uniform(0, (64,))
    for other in (sample_streams(2, "shot_noise", 2, ids), sample_streams(1, "speckle_noise", 2, ids),
                  sample_streams(1, "shot_noise", 3, ids), sample_streams(1, "shot_noise", 2, ids + 1)):
        assert not torch.equal(other.uniform(0, (64,)), base)
    assert not torch.equal(sample_streams(1, "shot_noise", 2, ids).uniform(1, (64,)), base)
    # samples are not shifted copies of each other
    assert (base[0, :, None] == base[1, None, :]).float().mean() < 1e-3


def test_uniform_and_normal_distributions():
    s = rng.SampleStreams(rng.set_key(0, "t", "d"), torch.arange(4), "cpu")
    u = s.uniform(0, (25000,), torch.float64).flatten().numpy()
    assert stats.kstest(u, "uniform").pvalue > 1e-3
    z = s.normal(1, (25000,), torch.float64).flatten().numpy()
    assert stats.kstest(z, "norm").pvalue > 1e-3
    assert abs(np.corrcoef(z[:-1:2], z[1::2])[0, 1]) < 0.02  # the two halves of a Box-Muller pair


@pytest.mark.parametrize("rate", [0.05, 0.7, 4.0, 9.99, 10.0, 23.5, 60.0, 500.0])
def test_poisson_distribution(rate):
    """shot_noise's sampler (inversion below rate 10, PTRS from 10) against the Poisson law:
    mean and variance within 5 standard errors, and the largest gap between the empirical and
    the exact CDF below the 0.1 % critical value of a one-sample KS test."""
    n = 40000
    s = rng.SampleStreams(rng.set_key(0, "shot", str(rate)), torch.arange(4), "cpu")
    k = s.poisson(0, torch.full((4, n // 4), rate)).flatten().double().numpy()
    assert np.all(k == np.round(k)) and k.min() >= 0
    assert abs(k.mean() - rate) < 5 * math.sqrt(rate / n)
    assert abs(k.var() - rate) < 5 * rate * math.sqrt((2 + 1 / rate) / n)
    grid = np.arange(0, int(rate + 10 * math.sqrt(rate) + 10))
    empirical = np.searchsorted(np.sort(k), grid, side="right") / n
    assert np.abs(empirical - stats.poisson.cdf(grid, rate)).max() < 1.95 / math.sqrt(n)


def test_poisson_rate_zero_and_mixed_rates():
    s = rng.SampleStreams(rng.set_key(0, "shot", "mix"), torch.arange(2), "cpu")
    rates = torch.tensor([[0.0, 3.0, 12.0, 450.0] * 500] * 2)
    k = s.poisson(0, rates)
    assert torch.equal(k[rates == 0], torch.zeros_like(k[rates == 0]))
    for r in (3.0, 12.0, 450.0):
        assert abs(k[rates == r].mean().item() - r) < 5 * math.sqrt(r / 1000)


def test_streams_are_pinned_to_the_corruption_version():
    """The integers behind version 2's noisy images. If this fails the streams changed: every
    noisy image changes, so bump CORRUPTION_VERSION (and its tag in rng.py) and update these."""
    from nvpt.robustness.corruptions import CORRUPTION_VERSION

    assert CORRUPTION_VERSION == 2 and rng.VERSION_TAG == "v2"
    assert sample_streams(0, "gaussian_noise", 1, torch.tensor([0, 1])).words(0, 3).tolist() == [
        [3644110008, 1756477958, 520005704], [2196487505, 2526746272, 3362274836]]
    assert sample_streams(0, GAUSSIAN, None, torch.tensor([5]), sigma=0.1).words(2, 2).tolist() == [
        [3608431695, 3423053995]]


def test_a_stream_longer_than_its_counters_is_refused():
    s = rng.SampleStreams(rng.set_key(0, "t", "d"), torch.arange(1), "cpu")
    with pytest.raises(ValueError):
        s.words(0, 2, start=2 ** 32 - 1)
