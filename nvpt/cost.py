"""Estimated GPU time of planned runs, from the arithmetic they do and stated assumptions, not from a measurement.

No GPU machine has been lent to this project yet, so the throughputs below are assumptions, printed
with every estimate (`Assumptions`; tools/reproduce_paper.py takes --mfu etc. to replace them once
tools/gpu_check.sh has measured an H200):

- Work: floating-point operations of one forward pass per image, counted from the model's shape
  (every Linear of the blocks, the attention products on N tokens including the prompts, the patch
  embedding and the head). A training step costs 1 forward for `linear` (nothing before the head
  needs a gradient), 2 for the prompt methods (the backward pass computes input gradients through
  the frozen blocks, no weight gradients) and 3 for `full`. Every epoch evaluates the validation
  split once (protocol tune); the final evaluation passes the test split once per evaluation set
  (clean + every corruption x severity + every Gaussian sigma).
- GPU: an H200's dense bf16 peak, 989 TFLOP/s (NVIDIA's datasheet), at an assumed 35 % utilisation
  for ViT-B/16 under bf16 autocast in eager PyTorch.
- Input pipeline: decoding and resizing one image costs an assumed 4 ms of one CPU core for JPEG
  data sets and 0.3 ms for data sets held in memory as arrays, spread over data.num_workers.
  Each phase takes the longer of its GPU time and its input-pipeline time (they overlap).
- Every epoch adds an assumed 1 s: the training loader's workers start anew (they are reseeded
  per epoch for exact resumption) and the resumable checkpoint is written.
"""
from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from timm.models.swin_transformer import SwinTransformer
from torch import nn

from nvpt.suites import FGVC, VTAB, VTAB_TRAIN, VTAB_VAL
from nvpt.config import TORCHVISION_TASKS, Config
from nvpt.data import dtd, vtab1k
from nvpt.data.torchvision_tasks import TASKS
from nvpt.errors import NVPTError
from nvpt.models import create_backbone
from nvpt.robustness.evaluate import robustness_sets

STEP_FORWARDS = {"linear": 1.0, "vpt_shallow": 2.0, "vpt_deep": 2.0, "spike_nvpt": 2.0, "full": 3.0,
                 # the PEFT baselines, like the prompts, need input gradients through every block; their own
                 # weight gradients (biases, adapters, low-rank factors, scales) are small next to that
                 "bitfit": 2.0, "adapter": 2.0, "lora": 2.0, "ssf": 2.0}
ARRAY_DATASETS = ("cifar100", "svhn", "fashion_mnist", "textures")
# official split sizes without the VTAB-1k draw (data.vtab1k=false): (train, val or None)
FULL_SPLITS = {"dtd": (1880, 1880), "cifar100": (50000, None), "caltech101": (3060, None),
               "oxford_flowers102": (1020, 1020), "oxford_iiit_pet": (3680, None), "svhn": (73257, None)}


@dataclass(frozen=True)
class Assumptions:
    peak_tflops: float = 989.0  # H200 SXM, dense bf16
    mfu: float = 0.35  # share of the peak the runs sustain
    jpeg_ms: float = 4.0  # CPU ms per JPEG image: decode + bicubic resize
    array_ms: float = 0.3  # CPU ms per image held as an array: resize only
    epoch_s: float = 1.0  # fixed cost of an epoch: loader workers start, checkpoint written

    def describe(self) -> str:
        return (f"assumed, not measured: {self.mfu:.0%} of {self.peak_tflops:g} TFLOP/s bf16 (an H200), "
                f"{self.jpeg_ms:g} ms of CPU per JPEG image and {self.array_ms:g} ms per in-memory image "
                f"over data.num_workers loader processes, {self.epoch_s:g} s per epoch besides")


@dataclass
class RunCost:
    train_images: int  # per epoch
    val_images: int  # per epoch (0 without validation)
    test_images: int
    eval_sets: int  # clean + corrupted sets
    epochs: int  # still to train
    forward_gflops: float  # per image
    seconds: float


_BODY: dict[tuple, tuple[float, int]] = {}  # (FLOPs without the head, embed_dim) per backbone and prompt count


def forward_flops(cfg: Config) -> float:
    """Floating-point operations of one forward pass of one image through cfg's prompted model."""
    prompts = cfg.prompt.length if cfg.prompt.method in ("vpt_shallow", "vpt_deep", "spike_nvpt") else 0
    m = cfg.model
    key = (m.name, m.img_size, m.in_chans, m.kwargs, prompts)
    if key not in _BODY:
        _BODY[key] = _body_flops(cfg, prompts)
    body, dim = _BODY[key]
    return body + 2.0 * dim * (m.num_classes or 1000)  # + the head


def _body_flops(cfg: Config, prompts: int) -> tuple[float, int]:
    meta_cfg = copy.deepcopy(cfg)
    meta_cfg.model.update(pretrained=False, pretrained_file=None, num_classes=1)
    with torch.device("meta"):  # shapes only: no memory, no weights
        model = create_backbone(meta_cfg)
    if isinstance(model, SwinTransformer):
        return _swin_body_flops(model, prompts), model.num_features
    tokens = model.num_prefix_tokens + model.patch_embed.num_patches + prompts
    per_token = sum(2 * m.in_features * m.out_features for block in model.blocks for m in block.modules()
                    if isinstance(m, nn.Linear))
    attention = len(model.blocks) * 2 * 2 * tokens * tokens * model.embed_dim  # q k^T and attn v
    proj = model.patch_embed.proj
    patches = 2 * model.patch_embed.num_patches * proj.in_channels * proj.kernel_size[0] * proj.kernel_size[1] * proj.out_channels
    return float(per_token * tokens + attention + patches), model.embed_dim


def _linear_flops(*linears: nn.Linear) -> int:
    return sum(2 * m.in_features * m.out_features for m in linears)


def _swin_body_flops(model: SwinTransformer, prompts: int) -> float:
    """Swin (nvpt.models.prompted_swin): in every block the qkv and proj of each window's Wh*Ww tokens and the
    P prompts prepended to it, the attention products within each window, the MLP on the H*W tokens and P
    prompts; the patch merging of each later stage (its map + P prompts); the patch embedding."""
    flops = 0
    for stage in model.layers:
        if hasattr(stage.downsample, "reduction"):  # PatchMerging (stage 0 has an Identity)
            h, w = stage.output_resolution
            flops += _linear_flops(stage.downsample.reduction) * (h * w + prompts)
        for block in stage.blocks:
            (h, w), (wh, ww) = block.input_resolution, block.window_size
            windows, seq = math.ceil(h / wh) * math.ceil(w / ww), wh * ww + prompts  # windows of the padded map
            flops += windows * seq * _linear_flops(block.attn.qkv, block.attn.proj)
            flops += windows * 2 * 2 * seq * seq * block.attn.proj.in_features  # q k^T and attn v
            flops += (h * w + prompts) * _linear_flops(block.mlp.fc1, block.mlp.fc2)
    proj = model.patch_embed.proj
    h, w = model.patch_embed.grid_size
    return float(flops + 2 * h * w * proj.in_channels * proj.kernel_size[0] * proj.kernel_size[1] * proj.out_channels)


def image_counts(cfg: Config) -> tuple[int, int, int]:
    """(train, val per epoch, test) images of cfg's data, from the official split sizes (no data needed) for dtd
    and the torchvision tasks, from the list files for vtab."""
    d = cfg.data
    if d.name in ("dtd", *TORCHVISION_TASKS):
        test = dtd.TEST_SIZE if d.name == "dtd" else TASKS[d.name].test_size
        if d.vtab1k:
            train, val = vtab1k.TRAIN_SIZE, vtab1k.VAL_SIZE
        else:
            train, official_val = FULL_SPLITS[d.name]
            val = official_val if official_val is not None else round(train * d.val_fraction)
            train -= 0 if official_val is not None else val
    elif d.name == "vtab":
        task = Path(d.root) / d.task
        lists = {name: task / f"{name}.txt" for name in ("train800", "val200", "test")}
        if all(p.is_file() for p in lists.values()):
            train, val, test = (sum(1 for line in p.read_text().splitlines() if line.strip()) for p in lists.values())
        elif d.task in VTAB:  # not placed yet: VTAB-1k's sizes
            train, val, test = VTAB_TRAIN, VTAB_VAL, VTAB[d.task].test_size
        else:
            raise NVPTError(f"cost: the VTAB-1k lists of {task} are not there to count; place the task folder first")
    elif d.name == "fgvc":
        train, val, test = fgvc_sizes(d)
    else:
        raise NVPTError(f"cost: no split sizes known for data.name={d.name}; estimates cover dtd, vtab, fgvc and "
                        f"{', '.join(TORCHVISION_TASKS)}")
    if d.protocol == "final":
        return train + (0 if d.name == "fgvc" else val), 0, test  # fgvc's final runs train on train.json alone
    return train, val, test


def fgvc_sizes(d) -> tuple[int, int, int]:
    """(train, val, test) images of an FGVC data set: its split files when placed, else the reference's sizes."""
    info = FGVC.get(d.task)
    if info is None:
        raise NVPTError(f"cost: unknown fgvc data.task {d.task!r}; use one of {', '.join(FGVC)}")
    folder = Path(d.root) / info.folder
    files = [folder / f"{name}.json" for name in ("train", "val", "test")]
    if not all(p.is_file() for p in files):
        return info.sizes
    try:
        return tuple(len(json.loads(p.read_text())) for p in files)
    except ValueError as exc:
        raise NVPTError(f"cost: cannot read the split files in {folder} ({exc}); restore them") from None


def run_cost(cfg: Config, epochs_left: int, assume: Assumptions = Assumptions()) -> RunCost:
    """Estimated seconds for the rest of one run: `epochs_left` epochs (0: only the final evaluation left)."""
    flops = forward_flops(cfg)
    train, val, test = image_counts(cfg)
    sets = 1 + len(robustness_sets(cfg.eval))  # the clean set and every corrupted one (groups like `all` expanded)
    gpu_rate = assume.peak_tflops * 1e12 * assume.mfu  # FLOP/s
    per_image_cpu = (assume.array_ms if cfg.data.name in ARRAY_DATASETS else assume.jpeg_ms) / 1000
    loader = per_image_cpu / max(cfg.data.num_workers, 1)

    def phase(images: float, forwards: float) -> float:
        return max(images * forwards * flops / gpu_rate, images * loader)

    epoch = phase(train, STEP_FORWARDS[cfg.prompt.method]) + phase(val, 1.0) + assume.epoch_s
    evaluated = val if cfg.eval.split == "val" else test  # the final evaluation's split
    seconds = epochs_left * epoch + phase(evaluated * sets, 1.0)
    return RunCost(train, val, test, sets, epochs_left, flops / 1e9, seconds)
