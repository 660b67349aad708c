"""Image transforms: the VTAB and FGVC recipes of the VPT paper, ending in [0,1] tensors.

No `Normalize` here: noise corruptions act on [0,1] images, so the engine normalises
on the device after corrupting (with `DataBundle.mean/std`).
"""
from __future__ import annotations

from PIL import Image
from torchvision import transforms as T

from nvpt.errors import NVPTError

# VPT resizes with bicubic interpolation (PIL's filter 3) in both recipes.
BICUBIC = T.InterpolationMode.BICUBIC
# FGVC evaluation: resize the short side to img_size / 0.875 (256 for 224), then centre crop.
_FGVC_CROP_RATIO = 0.875


class ToMode:
    """Convert a PIL image to the model's channel count: 'RGB' (3) or 'L' (1).

    A class rather than a lambda so that transforms pickle into DataLoader workers.
    """

    def __init__(self, in_chans: int):
        modes = {1: "L", 3: "RGB"}
        if in_chans not in modes:
            raise NVPTError(f"model.in_chans={in_chans} is not supported by the data pipeline; use 1 (grayscale) or 3 (RGB)")
        self.mode = modes[in_chans]

    def __call__(self, image: Image.Image) -> Image.Image:
        return image if image.mode == self.mode else image.convert(self.mode)

    def __repr__(self) -> str:
        return f"ToMode({self.mode!r})"


def vtab_transform(img_size: int, in_chans: int, flip: bool = False) -> T.Compose:
    """VTAB recipe: resize to img_size x img_size (no crop), for training and evaluation alike.

    `flip` adds a random horizontal flip (used for textures crops under data.transform=fgvc).
    """
    steps = [ToMode(in_chans), T.Resize((img_size, img_size), interpolation=BICUBIC)]
    if flip:
        steps.append(T.RandomHorizontalFlip())
    steps.append(T.ToTensor())
    return T.Compose(steps)


def fgvc_transform(img_size: int, in_chans: int, train: bool) -> T.Compose:
    """FGVC recipe: RandomResizedCrop + flip for training; resize to img_size/0.875 + centre crop for evaluation."""
    if train:
        steps = [T.RandomResizedCrop(img_size, interpolation=BICUBIC), T.RandomHorizontalFlip()]
    else:
        steps = [T.Resize(int(img_size / _FGVC_CROP_RATIO), interpolation=BICUBIC), T.CenterCrop(img_size)]
    return T.Compose([ToMode(in_chans), *steps, T.ToTensor()])


def build_transform(name: str, img_size: int, in_chans: int, train: bool) -> T.Compose:
    """The transform selected by cfg.data.transform ('vtab' or 'fgvc')."""
    if name == "vtab":
        return vtab_transform(img_size, in_chans)
    if name == "fgvc":
        return fgvc_transform(img_size, in_chans, train)
    raise NVPTError(f"unknown data.transform {name!r}; use vtab or fgvc")
