"""Counter-based randomness for the corruptions, computed on the images' device in torch integer ops.

Every random number of a corrupted image is a pure function of
(evaluation seed, set name, severity or sigma, sample id, stream, element counter):

    set key      3 words of SHA-256("nvpt-corruption|v2|seed|name|level"), on the host (Python constants)
    sample key   s = mix(mix(id_lo ^ k0) ^ id_hi ^ k1), one word per sample, on the device
    stream t     a = s ^ T(t) (T(t) a fixed word per stream), g = mix(a ^ k2) | 1 (odd, < 2**31),
                 b = mix(a ^ k2 ^ 0x5BD1E995)
    element n    h = mix(n * g + b mod 2**32), a 32-bit word (a hashed Weyl sequence, as SplitMix)

`mix` is a 32-bit integer hash (xorshift-multiply, the "[16 21f0aaad 15 735a2d97 15]" hash of
Chris Wellons' hash-prospector). Words are kept in int64 tensors in [0, 2**32); both
multipliers are below 2**31, so every product is below 2**63 and exact: no overflow, and the
same integers on every device (integer ops are exact on CPU and CUDA). Nothing depends on the
batch: a sample's numbers are the same whatever the batch size, order or the other samples.

From the words:
    uniform     (h >> 8) / 2**24 in [0, 1) (24 bits, exact in float32 and float64): bit-identical on
                every device, and so is everything computed from it with exact ops (comparisons,
                floor, integer shifts: impulse noise, glass-blur shifts, frost crops).
    normal      Box-Muller on the pair of uniforms of counters 2j, 2j + 1: element 2j gets
                r cos(2 pi u2), element 2j + 1 gets r sin(2 pi u2), r = sqrt(-2 log(1 - u1)).
                log, sin and cos are not correctly rounded, so CPU and CUDA can differ in the last
                bit of a normal (and of what is computed from it).
    poisson     see `poisson` below.
"""
from __future__ import annotations

import hashlib
import math

import torch
from torch import Tensor

MASK = 0xFFFFFFFF
_M1, _M2 = 0x21F0AAAD, 0x735A2D97  # odd, below 2**31: products of a 32-bit word stay below 2**63
_U24 = 1.0 / (1 << 24)
CPU_CHUNK = 1 << 16  # elements per piece on the CPU (fits the cache)
VERSION_TAG = "v2"  # in the set key: bump with CORRUPTION_VERSION when the streams change


def mix(x: Tensor) -> Tensor:
    """The 32-bit hash of each word of x (int64 in [0, 2**32)); a bijection of [0, 2**32)."""
    x = x ^ (x >> 16)  # out of place: torch's in-place scalar bitwise ops are slower on the CPU
    x = (x * _M1) & MASK
    x = x ^ (x >> 15)
    x = (x * _M2) & MASK
    return x ^ (x >> 15)


def mix_int(x: int) -> int:
    """`mix` of one Python integer (for keys computed on the host and the reference in the tests)."""
    x &= MASK
    x ^= x >> 16
    x = (x * _M1) & MASK
    x ^= x >> 15
    x = (x * _M2) & MASK
    return x ^ (x >> 15)


def set_key(seed: int, name: str, level: str) -> tuple[int, int, int]:
    """Three 32-bit words for one evaluation set (hashlib, not hash(): str hashes are salted per process)."""
    digest = hashlib.sha256(f"nvpt-corruption|{VERSION_TAG}|{int(seed)}|{name}|{level}".encode()).digest()
    return tuple(int.from_bytes(digest[4 * i:4 * i + 4], "little") for i in range(3))


class SampleStreams:
    """The random numbers of the samples of one batch for one evaluation set, on `device`.

    Each draw names a stream (a small int, one per kind of draw of a corruption) and returns
    [B, *shape]; element n of the flattened shape is counter n of that stream."""

    def __init__(self, key: tuple[int, int, int], sample_ids: Tensor, device: torch.device | str):
        ids = torch.as_tensor(sample_ids).to(device=device, dtype=torch.int64)
        self.device = ids.device
        self.key = key
        lo, hi = ids & MASK, (ids >> 32) & MASK
        self.sample = mix(mix(lo ^ key[0]) ^ hi ^ key[1])  # [B]

    def __len__(self) -> int:
        return self.sample.shape[0]

    def _weyl(self, stream: int) -> tuple[Tensor, Tensor]:
        a = self.sample ^ mix_int(0x9E3779B9 * (int(stream) + 1))
        g = (mix(a ^ self.key[2]) & 0x7FFFFFFF) | 1
        return g[:, None], mix(a ^ (self.key[2] ^ 0x5BD1E995))[:, None]

    def words(self, stream: int, n: int, start: int = 0) -> Tensor:
        """[B, n] 32-bit words (int64) of counters start .. start + n - 1 of `stream`."""
        if int(start) + int(n) > 1 << 32:  # n * g must stay below 2**63 (g < 2**31)
            raise ValueError(f"a stream has 2**32 counters; asked for {start} + {n}")
        g, b = self._weyl(stream)
        counter = torch.arange(int(start), int(start) + int(n), dtype=torch.int64, device=self.device)
        return mix((counter[None] * g + b) & MASK)

    def chunks(self, n: int):
        """(start, stop) pieces of n counters: the whole on an accelerator, cache-sized on the CPU
        (the numbers do not depend on the split)."""
        step = n if self.device.type != "cpu" else max(1, CPU_CHUNK // max(1, len(self)))
        return [(s, min(s + step, n)) for s in range(0, n, step)]

    def uniform(self, stream: int, shape=(), dtype: torch.dtype = torch.float32) -> Tensor:
        """[B, *shape] uniforms in [0, 1) on a 2**-24 grid (bit-identical on every device)."""
        shape = tuple(int(v) for v in shape)
        u = self._pieces(math.prod(shape), lambda a, b: self._uniform(stream, b - a, a, dtype))
        return u.reshape(len(self), *shape)

    def _uniform(self, stream: int, n: int, start: int, dtype: torch.dtype) -> Tensor:
        return (self.words(stream, n, start) >> 8).to(dtype).mul_(_U24)

    def _pieces(self, n: int, fn) -> Tensor:
        parts = [fn(a, b) for a, b in self.chunks(n)]
        return parts[0] if len(parts) == 1 else torch.cat(parts, 1)

    def normal(self, stream: int, shape=(), dtype: torch.dtype = torch.float32) -> Tensor:
        """[B, *shape] standard normals (Box-Muller on counter pairs)."""
        shape = tuple(int(s) for s in shape)
        n = math.prod(shape)
        z = self._pieces((n + 1) // 2, lambda a, b: self._normal_pairs(stream, a, b, dtype))
        return z[:, :n].reshape(len(self), *shape)

    def _normal_pairs(self, stream: int, start: int, stop: int, dtype: torch.dtype) -> Tensor:
        u = self._uniform(stream, 2 * (stop - start), 2 * start, dtype).view(len(self), -1, 2)
        r = torch.log(1.0 - u[..., 0]).mul_(-2.0).sqrt_()  # 1 - u1 in (0, 1], exact
        theta = u[..., 1].mul(2.0 * math.pi)
        return torch.stack([torch.cos(theta).mul_(r), torch.sin(theta).mul_(r)], -1).view(len(self), -1)

    def poisson(self, stream: int, rate: Tensor, attempts: int = 6) -> Tensor:
        """Poisson counts with the given rates ([B, ...] on the device, >= 0), float32.

        Rates below 10: inversion, the count of k < 40 with CDF(k) <= u (one uniform per element;
        P(X >= 40) < 1e-9 for a rate below 10). Rates of 10 or more: Hormann's transformed
        rejection (PTRS, as numpy and torch's CPU sampler use), a fixed number of attempts, each
        with its own pair of uniforms, vectorised (no data-dependent loop); the first accepted
        candidate is the count. An element rejected in every attempt (probability below 1e-6 for
        6 attempts) takes round(rate + sqrt(rate) z) instead. Both branches are computed for
        every element (compacting would read data back to the host). float64 inside."""
        lam = rate.double().reshape(len(self), -1)
        out = self._pieces(lam.shape[1], lambda a, b: self._poisson(stream, lam[:, a:b], a, attempts))
        return out.reshape(rate.shape)

    def _poisson(self, stream: int, lam: Tensor, start: int, attempts: int) -> Tensor:
        n = lam.shape[1]
        # small rates: inversion
        small = lam.clamp(max=10.0)
        u = self._uniform(stream, n, start, torch.float64)
        p = torch.exp(-small)
        cdf = p.clone()
        count = torch.zeros_like(small)
        for k in range(1, 40):
            count.add_(u >= cdf)
            p.mul_(small).div_(k)
            cdf.add_(p)
        # large rates: PTRS
        big = lam.clamp(min=10.0)
        slam, loglam = big.sqrt(), big.log()
        b = slam.mul(2.53).add_(0.931)
        a = b.mul(0.02483).add_(-0.059)
        log_invalpha = torch.log(1.1239 + 1.1328 / (b - 3.4))
        vr = 0.9277 - 3.6224 / (b - 2)
        z = self._normal_pairs(stream + 1, start // 2, (start + n + 1) // 2 + (start % 2), torch.float64)
        z = z[:, start % 2:start % 2 + n]
        result = torch.round(big + slam * z).clamp_(min=0)
        for t in reversed(range(attempts)):  # later attempts first, so that the earliest accepted one wins
            uv = self._uniform(stream + 2 + t, 2 * n, 2 * start, torch.float64).view(len(self), n, 2)
            U, V = uv[..., 0] - 0.5, uv[..., 1]
            us = 0.5 - U.abs()
            k = torch.floor((2 * a / us + b) * U + big + 0.43)
            accept = (us >= 0.07) & (V <= vr)
            slow = ((k >= 0) & ~((us < 0.013) & (V > us))
                    & (torch.log(V / (a / (us * us) + b)) + log_invalpha
                       <= k * loglam - big - torch.lgamma(k + 1)))
            result = torch.where(accept | slow, k, result)
        return torch.where(lam < 10.0, count, result).float()
