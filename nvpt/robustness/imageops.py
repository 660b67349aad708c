"""Batched torch versions of the image operations the ImageNet-C corruptions are built from.

Each function reproduces the library call of the reference code (scipy.ndimage, scikit-image,
OpenCV, Pillow) on a whole batch: same border rule, same coordinate convention, same integer
rounding where the library works on 8-bit data. tests/test_corruption_suite.py checks them
against those libraries. Images are [B, C, H, W] (or [B, H, W] where stated).

Everything runs on the images' device: constants (kernels, resampling matrices) are built
there from Python numbers, and nothing reads image data back to the host (no .item(),
.tolist(), .cpu() or numpy of a tensor), so a batch on CUDA stays on CUDA. The exceptions are
documented where they are: none here (jpeg_compression in digital.py encodes on the CPU).

Border modes (`border_index`):
    nearest     a a a | a b c d | d d d      scipy 'nearest', OpenCV BORDER_REPLICATE
    reflect     b a | a b c d | d c          scipy/skimage 'reflect' (half-sample symmetric)
    reflect101  c b | a b c d | c b          OpenCV BORDER_REFLECT_101 (its default), torch 'reflect'
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


def border_index(idx: Tensor, n: int, mode: str) -> Tensor:
    """Map integer positions (any range) to 0..n-1 under a border mode."""
    if mode == "nearest":
        return idx.clamp(0, n - 1)
    if mode == "reflect":
        j = idx.remainder(2 * n)
        return torch.where(j >= n, 2 * n - 1 - j, j)
    if mode == "reflect101":
        if n == 1:
            return torch.zeros_like(idx)
        j = idx.remainder(2 * n - 2)
        return torch.where(j >= n, 2 * n - 2 - j, j)
    raise ValueError(f"unknown border mode {mode!r}")


def _padded(x: Tensor, dim: int, before: int, after: int, mode: str) -> Tensor:
    n = x.shape[dim]
    k = int(mode == "reflect101")  # reflect101 skips the edge sample
    if max(before, after) + k < n:  # one reflection at most: slices are cheaper than an index
        if mode == "nearest":
            return torch.cat([x.narrow(dim, 0, 1).repeat_interleave(before, dim), x,
                              x.narrow(dim, n - 1, 1).repeat_interleave(after, dim)], dim)
        return torch.cat([x.narrow(dim, k, before).flip(dim), x, x.narrow(dim, n - after - k, after).flip(dim)], dim)
    idx = border_index(torch.arange(-before, n + after, device=x.device), n, mode)
    return x.index_select(dim, idx)


def correlate1d(x: Tensor, weights: Tensor, dim: int, mode: str) -> Tensor:
    """scipy.ndimage.correlate1d with an odd-length kernel centred on each element (origin 0)."""
    taps = [float(w) for w in weights]  # Python numbers (a kernel built from constants), never device data
    r = (len(taps) - 1) // 2
    n = x.shape[dim]
    xp = _padded(x, dim, r, r, mode)
    out = xp.narrow(dim, 0, n) * taps[0]
    for k in range(1, len(taps)):  # one multiply-add per tap: cheaper than conv1d on tall batches
        out.add_(xp.narrow(dim, k, n), alpha=taps[k])
    return out


@lru_cache(maxsize=256)
def gaussian_kernel1d(sigma: float, truncate: float) -> tuple[float, ...]:
    """scipy's normalised Gaussian kernel, radius int(truncate * sigma + 0.5), as Python floats
    (computed with numpy as scipy does: a host constant, never a tensor)."""
    radius = int(truncate * float(sigma) + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    phi = np.exp(-0.5 / (float(sigma) * float(sigma)) * x * x)
    return tuple(float(v) for v in phi / phi.sum())


def gaussian_filter(x: Tensor, sigma, dims=(-2, -1), mode: str = "nearest", truncate: float = 4.0) -> Tensor:
    """scipy.ndimage.gaussian_filter over `dims` (skimage.filters.gaussian: mode 'nearest',
    truncate 4). One pass per axis, in order, each computed in float64 and stored in x's dtype
    as scipy does; a sigma of 0 leaves that axis alone. sigma: a number or one per dim."""
    sigmas = sigma if isinstance(sigma, (tuple, list)) else [sigma] * len(dims)
    for dim, s in zip(dims, sigmas):
        if s > 1e-15:
            x = correlate1d(x.double(), gaussian_kernel1d(s, truncate), dim, mode).to(x.dtype)
    return x


def filter2d(x: Tensor, kernel: Tensor, mode: str = "reflect101") -> Tensor:
    """cv2.filter2D (correlation, anchor at the centre) of every [H, W] plane of x with an odd kernel."""
    kh, kw = kernel.shape
    xp = _padded(_padded(x, -2, kh // 2, kh // 2, mode), -1, kw // 2, kw // 2, mode)
    lead = xp.shape[:-2]
    out = F.conv2d(xp.reshape(-1, 1, *xp.shape[-2:]), kernel.to(xp)[None, None])  # the image's dtype and device
    return out.reshape(*lead, *out.shape[-2:])


def box3(x: Tensor) -> Tensor:
    """cv2.blur(x, (3, 3)): mean of the 3x3 neighbourhood, BORDER_REFLECT_101, summed in float64."""
    return filter2d(x.double(), torch.ones(3, 3, dtype=torch.float64, device=x.device)) * (1.0 / 9.0)


# ----------------------------------------------------------------------------- resampling

def zoom_matrix(n_in: int, zoom: float, device=None) -> Tensor:
    """[round(n_in * zoom), n_in] float64 matrix of scipy.ndimage.zoom(order=1) along one axis
    (grid_mode=False: the first and last samples of input and output coincide), on `device`."""
    n_out = int(round(n_in * zoom))
    step = (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
    c = torch.arange(n_out, dtype=torch.float64, device=device) * step
    i0 = torch.floor(c)
    f = c - i0
    cols = torch.arange(n_in, dtype=torch.float64, device=device)[None]
    i0, f = i0[:, None].clamp(max=n_in - 1), f[:, None]
    return torch.where(cols == i0, 1.0 - f, 0.0) + torch.where((cols == i0 + 1) & (f > 0), f, 0.0)


def clipped_zoom_matrix(n: int, zoom: float, crop: bool = True, device=None) -> Tensor:
    """Matrix of imagecorruptions' clipped_zoom along one axis: the centre ceil(n / zoom) samples
    zoomed by `zoom` with scipy (order 1): [round(ceil(n / zoom) * zoom), n], or with `crop`
    only the first n outputs (as zoom_blur keeps them; fewer outputs are left 0). On `device`."""
    ch = int(math.ceil(n / float(zoom)))
    top = (n - ch) // 2
    m = zoom_matrix(ch, zoom, device)
    full = torch.zeros(n if crop else m.shape[0], n, dtype=torch.float64, device=device)
    rows = min(full.shape[0], m.shape[0])
    full[:rows, top:top + ch] = m[:rows]
    return full


def clipped_zoom(x: Tensor, zoom: float, crop: bool = True) -> Tensor:
    """clipped_zoom of every [H, W] plane of x (float64 result; see clipped_zoom_matrix)."""
    my = clipped_zoom_matrix(x.shape[-2], float(zoom), crop, x.device)
    mx = clipped_zoom_matrix(x.shape[-1], float(zoom), crop, x.device)
    return my @ x.double() @ mx.T


_PIL_BITS = 22  # Pillow's PRECISION_BITS for 8-bit resampling (32 - 8 - 2)


def pil_box_weights(n_in: int, n_out: int, device=None) -> Tensor:
    """[n_out, n_in] fixed-point weights (integers, in float64) of Pillow's BOX resampling along
    one axis (precompute_coeffs + normalize_coeffs_8bpc), computed on `device` with the same
    float64 operations as Pillow's C code."""
    scale = n_in / n_out
    filterscale = max(scale, 1.0)
    support = 0.5 * filterscale
    center = (torch.arange(n_out, dtype=torch.float64, device=device)[:, None] + 0.5) * scale
    xmin = torch.trunc(center - support + 0.5).clamp(min=0)
    xmax = torch.trunc(center + support + 0.5).clamp(max=n_in)
    x = torch.arange(n_in, dtype=torch.float64, device=device)[None]
    t = (x - center + 0.5) / filterscale
    k = ((x >= xmin) & (x < xmax) & (t > -0.5) & (t <= 0.5)).double()
    total = k.sum(1, keepdim=True)
    return torch.where(total > 0, torch.trunc(0.5 + k / total.clamp(min=1) * (1 << _PIL_BITS)), 0.0)


def pil_box_resize_u8(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Image.resize(size=(W, H), Image.BOX) of uint8-valued images (integers in a float or int
    tensor [..., H, W]): horizontal pass, then vertical, each rounded to 8 bits as Pillow does."""
    h_out, w_out = size
    v = x.double().round()
    # integer arithmetic in float64 (exact below 2**53; integer matmul does not run on CUDA)
    half, unit = float(1 << (_PIL_BITS - 1)), float(1 << _PIL_BITS)
    if w_out != v.shape[-1]:
        wx = pil_box_weights(v.shape[-1], w_out, x.device)
        v = torch.floor((v @ wx.T + half) / unit).clamp(0, 255)
    if h_out != v.shape[-2]:
        wy = pil_box_weights(v.shape[-2], h_out, x.device)
        v = torch.floor((wy @ v + half) / unit).clamp(0, 255)
    return v.to(x.dtype)


def pil_nearest_index(n_in: int, n_out: int, device=None) -> Tensor:
    """Source index of every output sample of Pillow's NEAREST resize: floor((o + 0.5) * n_in / n_out)."""
    scale = n_in / n_out
    o = torch.arange(n_out, dtype=torch.float64, device=device)
    return torch.trunc((o + 0.5) * scale).long().clamp(max=n_in - 1)


def sample_bilinear(x: Tensor, ys: Tensor, xs: Tensor, mode: str = "reflect") -> Tensor:
    """scipy.ndimage.map_coordinates(order=1) per image and channel: x [B, C, H, W],
    coordinates ys, xs [B, H', W'] (float64); returns [B, C, H', W'] in float64."""
    B, C, H, W = x.shape
    y0, x0 = torch.floor(ys), torch.floor(xs)
    fy, fx = ys - y0, xs - x0
    y0, x0 = y0.long(), x0.long()
    flat = x.double().reshape(B, C, H * W)

    def tap(yi, xi):
        idx = (border_index(yi, H, mode) * W + border_index(xi, W, mode)).reshape(B, 1, -1).expand(B, C, -1)
        return flat.gather(2, idx).reshape(B, C, *ys.shape[1:])

    fy, fx = fy[:, None], fx[:, None]
    return ((tap(y0, x0) * (1 - fx) + tap(y0, x0 + 1) * fx) * (1 - fy)
            + (tap(y0 + 1, x0) * (1 - fx) + tap(y0 + 1, x0 + 1) * fx) * fy)


def warp_affine(x: Tensor, m: Tensor) -> Tensor:
    """cv2.warpAffine(x, M, (W, H), INTER_LINEAR, BORDER_REFLECT_101), one 2x3 matrix per image
    (m [B, 2, 3] float64, mapping source to destination): each output pixel samples the source
    bilinearly at the inverse map of its position (OpenCV 5 evaluates it in floating point;
    OpenCV 4 rounded it to 1/32 pixel). float64 result."""
    B, C, H, W = x.shape
    a, b, c, d, e, f = (m[:, 0, 0], m[:, 0, 1], m[:, 0, 2], m[:, 1, 0], m[:, 1, 1], m[:, 1, 2])
    det = a * e - b * d
    inv = torch.where(det != 0, 1.0 / det, torch.zeros_like(det))
    i00, i01, i10, i11 = e * inv, -b * inv, -d * inv, a * inv
    i02 = -i00 * c - i01 * f
    i12 = -i10 * c - i11 * f
    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float64, device=x.device),
                            torch.arange(W, dtype=torch.float64, device=x.device), indexing="ij")
    sx = i00[:, None, None] * xs + i01[:, None, None] * ys + i02[:, None, None]
    sy = i10[:, None, None] * xs + i11[:, None, None] * ys + i12[:, None, None]
    return sample_bilinear(x, sy, sx, "reflect101")


def affine_from_points(src: Tensor, dst: Tensor) -> Tensor:
    """cv2.getAffineTransform per image: src, dst [B, 3, 2] points (x, y) -> [B, 2, 3] float64."""
    src, dst = src.double(), dst.double()
    ones = torch.ones(*src.shape[:2], 1, dtype=torch.float64, device=src.device)
    a = torch.cat([src, ones], dim=2)  # [B, 3, 3]: rows (x, y, 1)
    return torch.linalg.solve(a, dst).transpose(1, 2)  # a @ M.T = dst


# ----------------------------------------------------------------------------- colour

def rgb_to_hsv(x: Tensor) -> Tensor:
    """skimage.color.rgb2hsv on [B, 3, H, W] (float64)."""
    x = x.double()
    r, g, b = x.unbind(1)
    v = x.amax(1)
    delta = v - x.amin(1)
    safe = torch.where(delta == 0, torch.ones_like(delta), delta)
    s = torch.where(delta == 0, torch.zeros_like(v), delta / torch.where(v == 0, torch.ones_like(v), v))
    h = torch.zeros_like(v)
    h = torch.where(r == v, (g - b) / safe, h)  # later maxima win, as in skimage
    h = torch.where(g == v, 2.0 + (b - r) / safe, h)
    h = torch.where(b == v, 4.0 + (r - g) / safe, h)
    h = torch.where(delta == 0, torch.zeros_like(h), (h / 6.0).remainder(1.0))
    return torch.stack([h, s, v], 1)


def hsv_to_rgb(hsv: Tensor) -> Tensor:
    """skimage.color.hsv2rgb on [B, 3, H, W] (float64)."""
    h, s, v = hsv.double().unbind(1)
    hi = torch.floor(h * 6)
    f = h * 6 - hi
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    hi = hi.long().remainder(6)
    table = torch.stack([torch.stack(c, 1) for c in
                         ((v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))], 0)  # [6, B, 3, H, W]
    return table.gather(0, hi[None, :, None].expand(1, -1, 3, -1, -1))[0]


def rgb_to_gray(x: Tensor) -> Tensor:
    """cv2.cvtColor(RGB2GRAY) of float images: 0.299 R + 0.587 G + 0.114 B, [B, 1, H, W]."""
    r, g, b = x.unbind(1)
    return (r * 0.299 + g * 0.587 + b * 0.114)[:, None]


# ----------------------------------------------------------------------------- motion blur

def motion_blur(x: Tensor, radius: int, sigma: float, angles: Tensor) -> Tensor:
    """imagecorruptions' `_motion_blur`: x [B, C, H, W] (or [B, H, W]), one angle (degrees,
    float64) per image. Sum of `2 radius + 1` copies shifted along the angle with edge
    replication, weighted by a one-sided Gaussian; a copy shifted by the image size or more
    (and every later one) is left out without renormalising, as in the reference. float64."""
    planar = x.dim() == 3
    if planar:
        x = x[:, None]
    B, C, H, W = x.shape
    width = 2 * int(radius) + 1
    t = np.arange(width, dtype=np.float64)
    k = np.exp(-t ** 2 / (2 * sigma * sigma)) / (np.sqrt(2 * np.pi) * sigma)
    k = (k / k.sum()).tolist()  # host constants of the severity (numpy, as the reference computes them)
    rad = torch.deg2rad(angles.double().to(x.device))
    py, px = width * torch.sin(rad), width * torch.cos(rad)
    hyp = torch.hypot(py, px)
    flat = x.double().reshape(B, C, H * W)
    out = torch.zeros_like(flat)
    rows = torch.arange(H, device=x.device)
    cols = torch.arange(W, device=x.device)
    alive = torch.ones(B, dtype=torch.bool, device=x.device)
    for i in range(width):  # every copy (no early exit: that would read `alive` back to the host)
        dy = -torch.ceil(i * py / hyp - 0.5).long()
        dx = -torch.ceil(i * px / hyp - 0.5).long()
        alive &= (dy.abs() < H) & (dx.abs() < W)
        sy = (rows[None] - dy[:, None]).clamp(0, H - 1)  # [B, H]
        sx = (cols[None] - dx[:, None]).clamp(0, W - 1)  # [B, W]
        idx = (sy[:, :, None] * W + sx[:, None, :]).reshape(B, 1, H * W)
        weight = (alive.double() * k[i])[:, None, None]
        out += weight * flat.gather(2, idx.expand(B, C, -1))
    out = out.reshape(B, C, H, W)
    return out[:, 0] if planar else out


# ----------------------------------------------------------------------------- spatter helpers

def canny(img: Tensor, low: int, high: int) -> Tensor:
    """cv2.Canny(img, low, high) (aperture 3, L1 gradient) of uint8-valued [B, H, W] -> bool edges."""
    v = img.to(torch.int64)
    p = _padded(_padded(v, -2, 1, 1, "nearest"), -1, 1, 1, "nearest")  # Sobel with BORDER_REPLICATE
    dx = (p[:, :-2, 2:] + 2 * p[:, 1:-1, 2:] + p[:, 2:, 2:]) - (p[:, :-2, :-2] + 2 * p[:, 1:-1, :-2] + p[:, 2:, :-2])
    dy = (p[:, 2:, :-2] + 2 * p[:, 2:, 1:-1] + p[:, 2:, 2:]) - (p[:, :-2, :-2] + 2 * p[:, :-2, 1:-1] + p[:, :-2, 2:])
    mag = dx.abs() + dy.abs()
    m = F.pad(mag, (1, 1, 1, 1))  # neighbours outside the image count as 0
    H, W = mag.shape[-2:]

    def at(oy, ox):
        return m[:, 1 + oy:1 + oy + H, 1 + ox:1 + ox + W]

    ax, ay = dx.abs(), dy.abs() << 15
    tg22x = ax * 13573  # tan(22.5 deg) in 15-bit fixed point
    tg67x = tg22x + (ax << 16)
    horizontal = ay < tg22x
    vertical = ~horizontal & (ay > tg67x)
    same_sign = (dx < 0) == (dy < 0)
    diag_a = torch.where(same_sign, at(-1, -1), at(-1, 1))
    diag_b = torch.where(same_sign, at(1, 1), at(1, -1))
    peak = torch.where(horizontal, (mag > at(0, -1)) & (mag >= at(0, 1)),
                       torch.where(vertical, (mag > at(-1, 0)) & (mag >= at(1, 0)), (mag > diag_a) & (mag > diag_b)))
    candidate = (mag > low) & peak
    return _hysteresis(candidate, candidate & (mag > high))


def _hysteresis(candidate: Tensor, strong: Tensor) -> Tensor:
    """The candidates 8-connected (through candidates) to a strong pixel, as OpenCV's hysteresis
    grows them. Connected components of the candidates by FastSV (Zhang, Azad & Hu 2020:
    hooking on grandparents, then shortcutting), a fixed number of rounds (2 log2(pixels) + 4,
    no convergence test, which would read data back to the host); each component is kept if it
    holds a strong pixel. FastSV converges in O(log n) rounds on image grids in practice; a
    component that had not would lose some of its weak pixels."""
    B, H, W = candidate.shape
    n = H * W
    idx = torch.arange(n, device=candidate.device).expand(B, n)
    cand = candidate.reshape(B, n)
    big = torch.full_like(idx, n)
    f = idx.clone()
    for _ in range(2 * max(1, math.ceil(math.log2(max(n, 2)))) + 4):
        gf = f.gather(1, f)
        g = torch.where(cand, gf, big).reshape(B, 1, H, W).float()  # labels < 2**24: exact in float32
        low = (-F.max_pool2d(-g, 3, 1, 1)).reshape(B, n).long()  # smallest grandparent among the neighbours
        low = torch.where(cand, low, big)
        f = f.scatter_reduce(1, f, low, "amin")  # stochastic hooking: the parent takes it
        f = torch.minimum(f, low)  # aggressive hooking
        f = torch.minimum(f, f.gather(1, f))  # shortcutting
    f = torch.where(cand, f, idx)
    holds = torch.zeros(B, n, dtype=torch.bool, device=candidate.device)
    holds = holds.scatter_reduce(1, f, strong.reshape(B, n), "amax")
    return (cand & holds.gather(1, f)).reshape(B, H, W)


_HV, _DIAG, _LONG = 1.0, 1.4, 2.1969  # cv2 DIST_L2 with a 5x5 mask, float32 arithmetic
_FORWARD = ((-2, -1, _LONG), (-2, 1, _LONG), (-1, -2, _LONG), (-1, -1, _DIAG), (-1, 0, _HV), (-1, 1, _DIAG),
            (-1, 2, _LONG))  # (row, column, step) of the earlier rows' neighbours; the left one comes in the row


def distance_to_edges(edges: Tensor, cap: float) -> Tensor:
    """min(cv2.distanceTransform(255 - 255 * edges, DIST_L2, 5), cap): OpenCV's two-pass 5x5
    chamfer distance (steps 1, 1.4, 2.1969, in float32) of every pixel to the nearest edge pixel;
    float32 [B, H, W]. Rows are scanned in OpenCV's order (a loop over rows, on the device); the
    chain along each row (a pixel takes its row neighbour's distance + 1 when smaller) is a
    log-step min-plus scan, adding s in one float32 rounding where OpenCV adds 1 s times: the two
    agree while the sum crosses at most one power of two, and differ by one float32 rounding at
    most otherwise."""
    B, H, W = edges.shape
    far = 1e30
    d = torch.full((B, H + 4, W + 4), far, dtype=torch.float32, device=edges.device)  # 2-pixel border
    for sign, rows in ((1, range(H)), (-1, range(H - 1, -1, -1))):
        for i in rows:
            r = i + 2
            cand = d[:, r, 2:W + 2] if sign < 0 else torch.full((B, W), far, dtype=torch.float32, device=edges.device)
            for dy, dx, w in _FORWARD:
                cand = torch.minimum(cand, d[:, r + sign * dy, 2 + sign * dx:W + 2 + sign * dx] + w)
            cand = cand.masked_fill(edges[:, i], 0.0)
            line = cand if sign > 0 else cand.flip(1)  # the chain runs left to right, then right to left
            step = 1
            while step < W:
                line = torch.minimum(line, F.pad(line[:, :-step], (step, 0), value=far) + float(step) * _HV)
                step *= 2
            d[:, r, 2:W + 2] = line if sign > 0 else line.flip(1)
    return d[:, 2:H + 2, 2:W + 2].clamp(max=cap)


def equalize_hist(img: Tensor) -> Tensor:
    """cv2.equalizeHist of uint8-valued [B, H, W] (int64 result)."""
    B = img.shape[0]
    v = img.to(torch.int64).reshape(B, -1)
    hist = torch.zeros(B, 256, dtype=torch.int64, device=img.device).scatter_add_(1, v, torch.ones_like(v))
    first = (hist > 0).to(torch.int64).argmax(1, keepdim=True)  # smallest value present
    total = v.shape[1]
    count_first = hist.gather(1, first)
    scale = (255.0 / (total - count_first).clamp(min=1).float())  # float32, as OpenCV
    cum = hist.cumsum(1) - count_first  # sum of hist[first+1 .. j]
    lut = torch.round(cum.float() * scale).clamp(0, 255).to(torch.int64)
    lut = torch.where(torch.arange(256, device=img.device)[None] <= first, torch.zeros_like(lut), lut)
    out = lut.gather(1, v).reshape(img.shape)
    constant = (count_first == total).reshape(B, *([1] * (img.dim() - 1)))
    return torch.where(constant, img.to(torch.int64), out)
