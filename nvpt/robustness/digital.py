"""Digital family (ImageNet-C), batched, as the `imagecorruptions` package computes it:

    brightness         HSV value + c (clipped to [0, 1]), skimage's HSV conversion
    contrast           (x - channel mean) * c + channel mean
    elastic_transform  "imagenet": imagecorruptions' elastic transform: displacements drawn
                       uniformly in +-0.5 % of the image height, smoothed by a Gaussian of 1 %
                       of the image size (truncate 3), times alpha; bilinear resampling with
                       reflected borders (scipy map_coordinates).
                       "cifar": CIFAR-10-C's: a random affine warp (the three corners of a square
                       around the centre jittered by +-c3 px, cv2.warpAffine), then displacements
                       uniform in +-1, smoothed by sigma c2, times alpha c1 (c1..c3 are fractions
                       of the image side)
    pixelate           Pillow BOX downscaling to c times the size, NEAREST upscaling back
    jpeg_compression   Pillow JPEG at quality c (on 8-bit RGB, per image on the CPU)
    saturate           HSV saturation * c1 + c2 (clipped to [0, 1])

Each function takes x [B, 3, H, W] in [0, 1].
"""
from __future__ import annotations

import io

import torch
from torch import Tensor

from nvpt.robustness.imageops import (
    affine_from_points,
    gaussian_filter,
    hsv_to_rgb,
    pil_box_resize_u8,
    pil_nearest_index,
    rgb_to_hsv,
    sample_bilinear,
    warp_affine,
)


def brightness(x: Tensor, c, draws, table: str) -> Tensor:
    h, s, v = rgb_to_hsv(x).unbind(1)
    return hsv_to_rgb(torch.stack([h, s, (v + c).clamp(0, 1)], 1))


def saturate(x: Tensor, c, draws, table: str) -> Tensor:
    factor, offset = c
    h, s, v = rgb_to_hsv(x).unbind(1)
    return hsv_to_rgb(torch.stack([h, (s * factor + offset).clamp(0, 1), v], 1))


def contrast(x: Tensor, c, draws, table: str) -> Tensor:
    x = x.double()
    means = x.mean(dim=(2, 3), keepdim=True)
    return (x - means) * c + means


def pixelate(x: Tensor, c, draws, table: str) -> Tensor:
    H, W = x.shape[-2:]
    small = pil_box_resize_u8(torch.round(x.double().clamp(0, 1) * 255), (max(int(H * c), 1), max(int(W * c), 1)))
    rows = pil_nearest_index(small.shape[-2], H, x.device)
    cols = pil_nearest_index(small.shape[-1], W, x.device)
    return small[..., rows, :][..., cols] / 255.0


def jpeg_compression(x: Tensor, c, draws, table: str) -> Tensor:
    """The one corruption computed on the CPU: Pillow's JPEG codec, image by image (the batch is
    copied to the host and back), as ImageNet-C. torchvision 0.29's encode_jpeg/decode_jpeg
    also take CUDA tensors, but there they run nvJPEG, another encoder, whose output could not
    be checked against Pillow's without a GPU (on the CPU torchvision's bytes equal Pillow's:
    both are libjpeg-turbo); and torchvision deprecates its codec from 0.29 on (TorchCodec)."""
    from PIL import Image

    B, C, H, W = x.shape
    pixels = torch.round(x.clamp(0, 1) * 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().contiguous()
    out = []
    for img in pixels:
        buffer = io.BytesIO()
        Image.frombytes("RGB", (W, H), img.numpy().tobytes()).save(buffer, "JPEG", quality=int(c))
        with Image.open(io.BytesIO(buffer.getvalue())) as decoded:
            data = torch.frombuffer(bytearray(decoded.convert("RGB").tobytes()), dtype=torch.uint8)
        out.append(data.reshape(H, W, 3))
    return torch.stack(out).permute(0, 3, 1, 2).to(x.device).float() / 255.0


def _draw_elastic(x: Tensor, streams, c, table: str) -> dict:
    H, W = x.shape[-2:]
    fields = streams.uniform(0, (2, H, W), torch.float64)  # dx, dy fields, uniform in [0, 1)
    if table == "cifar":  # and the affine jitter (3 points x (x, y))
        return {"affine": streams.uniform(1, (3, 2), torch.float64), "fields": fields}
    return {"fields": fields}


def elastic_transform(x: Tensor, c, draws: dict, table: str) -> Tensor:
    B, C, H, W = x.shape
    u = draws["fields"]
    image = x.float()
    if table == "cifar":
        alpha, sigma, jitter = (H * f for f in c)
        centre = torch.tensor([H // 2, W // 2], dtype=torch.float32, device=x.device)
        side = min(H, W) // 3
        src = torch.stack([centre + side, torch.stack([centre[0] + side, centre[1] - side]), centre - side])
        offset = (-jitter + (jitter - (-jitter)) * draws["affine"]).float()
        image = warp_affine(image, affine_from_points(src.expand(B, 3, 2), src + offset)).float()
        low, high, sigmas, truncate = -1.0, 1.0, sigma, 3.0
    else:
        alpha, sigmas, truncate = c, (H * 0.01, W * 0.01), 3.0
        low, high = -H * 0.005, H * 0.005
    fields = low + (high - low) * u  # [B, 2, H, W]: dx, dy
    fields = (gaussian_filter(fields, sigmas, mode="reflect", truncate=truncate) * alpha).float()
    rows = torch.arange(H, dtype=torch.float64, device=x.device)[None, :, None]
    cols = torch.arange(W, dtype=torch.float64, device=x.device)[None, None, :]
    return sample_bilinear(image, rows + fields[:, 1].double(), cols + fields[:, 0].double(), "reflect").float()


CORRUPTIONS = {  # name -> (draw(x, streams, c, table) -> dict or None, apply(x, c, draws, table))
    "brightness": (None, brightness),
    "contrast": (None, contrast),
    "elastic_transform": (_draw_elastic, elastic_transform),
    "pixelate": (None, pixelate),
    "jpeg_compression": (None, jpeg_compression),
    "saturate": (None, saturate),
}
