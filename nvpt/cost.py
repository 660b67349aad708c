"""Estimated time of planned runs, in four parts: GPU, loader, corruption and checkpoint I/O.

Every figure is either measured (and says on which machine, when) or an assumption (and says so); the
estimate prints which is which (`Assumptions.describe`). tools/reproduce_paper.py takes --mfu etc. to
replace the assumptions.

- GPU. Floating-point operations of one forward pass per image, counted from the model's shape (every
  Linear of the blocks, the attention products on N tokens including the prompts, the patch embedding
  and the head). A training step costs 1 forward for `linear` (nothing before the head needs a gradient),
  2 for the prompt methods (the backward pass computes input gradients through the frozen blocks, no
  weight gradients) and 3 for `full`. Every epoch evaluates the validation split once (protocol tune);
  the final evaluation passes the test split once per evaluation set (clean + every corruption x
  severity + every Gaussian sigma) for every run. Throughput: an H200's dense bf16 peak, 989 TFLOP/s
  (NVIDIA's datasheet), at an assumed 35 % utilisation, until tools/gpu_check.sh has measured it
  (docs/performance/gpu_check.json, read when present).
- Loader. Each run decodes its task's images once (nvpt.data.cache; counted per run, though runs
  sharing the disk cache decode a task once) at the uncached cost per image and CPU core, spread over
  data.num_workers processes (assumed to scale linearly); then the training process reads the cached
  images every epoch and once for the evaluation pass, whole batches at a time, at the cached cost per
  image, plus `epoch_s` per epoch. The per-core costs are the figures
  `make benchmark-eval` measured (docs/performance/benchmark_eval.json: 500x375 JPEGs resized to 224 px)
  on the machine named there; in-memory data sets (CIFAR, SVHN) cost `array_ms` uncached.
- Corruption. Once per task and set (corrupt once, score many: the runs evaluated in one pass share
  it): every noisy set corrupts the test split on the GPU at an assumed `gpu_corrupt_ms` per image
  until gpu_check.sh has measured it; jpeg_compression, on the CPU, at the CPU figure measured by
  `make benchmark-eval` when it has one.
- I/O. Checkpoint bytes written (checkpoint-last every train.save_every epochs with the optimizer
  state, checkpoint-best every epoch when a validation split selects it, else once) at the write
  speed `make benchmark-eval` measured (write, fsync, rename).
The total is the sum of the parts: an upper bound, as if the loader never overlapped the GPU.
"""
from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from timm.models.swin_transformer import SwinTransformer
from torch import nn

from nvpt.suites import FGVC, VTAB, VTAB_TRAIN, VTAB_VAL
from nvpt.config import PEFT_METHODS, TORCHVISION_TASKS, Config
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


ROOT = Path(__file__).resolve().parent.parent
CPU_FIGURES = ROOT / "docs" / "performance" / "benchmark_eval.json"  # make benchmark-eval
GPU_FIGURES = ROOT / "docs" / "performance" / "gpu_check.json"  # tools/gpu_check.sh on a GPU machine
DEVICE_CORRUPTIONS_EXCEPT = ("jpeg_compression",)  # every other set is corrupted on the images' device


def read_figures(path: Path | None) -> dict | None:
    """A figures JSON (benchmark_eval.json / gpu_check.json); None when there is none; a damaged one is an error."""
    if path is None or not Path(path).is_file():
        return None
    try:
        figures = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise NVPTError(f"cannot read {path}: {str(exc).splitlines()[0]}; remake it (make benchmark-eval) or "
                        "delete it") from None
    if not isinstance(figures, dict):
        raise NVPTError(f"{path} is not a figures JSON; remake it (make benchmark-eval) or delete it")
    return figures


@dataclass(frozen=True)
class Assumptions:
    """None: the measured figure where there is one, else the default in DEFAULTS."""

    peak_tflops: float = 989.0  # H200 SXM, dense bf16
    mfu: float | None = None  # share of the peak the runs sustain
    jpeg_ms: float | None = None  # CPU ms per JPEG image, uncached: decode + bicubic resize to 224 px
    array_ms: float = 0.3  # CPU ms per image held as an array: resize only
    cached_ms: float | None = None  # CPU ms per cached image read
    epoch_s: float = 0.05  # fixed cost of an epoch besides images and checkpoints (persistent loader workers)
    gpu_corrupt_ms: float | None = None  # GPU ms per 224-px image per noisy set
    write_mb_s: float | None = None  # checkpoint writes, MB/s
    cpu_figures: dict | None = field(default=None, compare=False)
    gpu_figures: dict | None = field(default=None, compare=False)


DEFAULTS = {"mfu": 0.35, "jpeg_ms": 4.0, "cached_ms": 0.2, "gpu_corrupt_ms": 0.02, "write_mb_s": 200.0,
            "cpu_corrupt_ms": 10.0}


def with_figures(assume: Assumptions = Assumptions(), cpu: Path | None = CPU_FIGURES,
                 gpu: Path | None = GPU_FIGURES) -> Assumptions:
    """The assumptions with the measured figure files attached (those that exist)."""
    import dataclasses

    return dataclasses.replace(assume, cpu_figures=read_figures(cpu), gpu_figures=read_figures(gpu))


def figure(assume: Assumptions, name: str) -> tuple[float, str]:
    """(value, where it comes from) of one input of the estimate."""
    given = getattr(assume, name, None)
    if given is not None:
        return given, "given"
    cpu, gpu = assume.cpu_figures or {}, assume.gpu_figures or {}
    cpu_where = f"measured on {cpu.get('device_name', '?')} on {cpu.get('date', '?')} (make benchmark-eval)"
    gpu_where = f"measured on {gpu.get('device_name', '?')} on {gpu.get('date', '?')} (tools/gpu_check.sh)"
    try:
        if name == "jpeg_ms" and cpu.get("loader", {}).get("uncached_images_per_s"):
            return 1000 / cpu["loader"]["uncached_images_per_s"], cpu_where
        if name == "cached_ms" and cpu.get("loader", {}).get("cached_images_per_s"):
            return 1000 / cpu["loader"]["cached_images_per_s"], cpu_where
        if name == "write_mb_s" and cpu.get("io", {}).get("write_mb_per_s"):
            return cpu["io"]["write_mb_per_s"], cpu_where + ", assumed alike on the GPU machine"
        if name == "mfu" and gpu.get("mfu"):
            return gpu["mfu"], gpu_where
        if name == "gpu_corrupt_ms" and gpu.get("corrupt_ms_per_image"):
            return gpu["corrupt_ms_per_image"], gpu_where
        if name == "cpu_corrupt_ms":
            row = cpu.get("eval", {}).get("ViT-B/16", {}).get("sets", {})
            ms = [1000 / r["corrupt_images_per_s"] for k, r in row.items() if k.startswith("jpeg_compression")]
            if ms:
                return sum(ms) / len(ms), cpu_where
    except (TypeError, KeyError, ZeroDivisionError):
        raise NVPTError(f"the figures JSON has a malformed entry for {name}; remake it (make benchmark-eval)") from None
    return DEFAULTS[name], "assumed"


def describe(assume: Assumptions) -> str:
    """Every input of the estimate with its source, one per line."""
    mfu, mfu_src = figure(assume, "mfu")
    rows = [f"GPU: {mfu:.0%} of {assume.peak_tflops:g} TFLOP/s bf16 (an H200's dense peak) [{mfu_src}]"]
    for name, what, unit in (("gpu_corrupt_ms", "corruption on the GPU per 224-px image and set", "ms"),
                             ("jpeg_ms", "uncached loading per JPEG image and CPU core (500x375 -> 224 px)", "ms"),
                             ("cached_ms", "cached loading per image, whole batches in the training process", "ms"),
                             ("write_mb_s", "checkpoint writes", "MB/s")):
        value, src = figure(assume, name)
        rows.append(f"{what}: {value:.3g} {unit} [{src}]")
    rows.append(f"in-memory images: {assume.array_ms:g} ms per image and core uncached [assumed]; "
                f"{assume.epoch_s:g} s per epoch besides [assumed]; loader processes: data.num_workers, scaling "
                "linearly [assumed]; total = the sum of the parts (no overlap: an upper bound)")
    return "\n".join("  - " + r for r in rows)


@dataclass
class RunCost:
    train_images: int  # per epoch
    val_images: int  # per epoch (0 without validation)
    test_images: int
    eval_sets: int  # clean + corrupted sets
    epochs: int  # still to train
    forward_gflops: float  # per image
    seconds: float  # the sum of the parts
    gpu_s: float = 0.0
    loader_s: float = 0.0
    corruption_s: float = 0.0
    io_s: float = 0.0


_BODY: dict[tuple, tuple[float, int]] = {}  # (FLOPs without the head, embed_dim) per backbone and prompt count
_PARAMS: dict[tuple, tuple[int, int, int]] = {}  # (backbone parameters without head, depth, embed_dim) per backbone
_PEFT: dict[tuple, int] = {}  # a PEFT baseline's own trainable parameters per backbone, method and its settings


def forward_flops(cfg: Config) -> float:
    """Floating-point operations of one forward pass of one image through cfg's prompted model."""
    prompts = cfg.prompt.length if cfg.prompt.method in ("vpt_shallow", "vpt_deep", "spike_nvpt") else 0
    m = cfg.model
    key = (m.name, m.img_size, m.in_chans, m.kwargs, prompts)
    if key not in _BODY:
        _BODY[key] = _body_flops(cfg, prompts)
    body, dim = _BODY[key]
    return body + 2.0 * dim * (m.num_classes or 1000)  # + the head


def _meta_config(cfg: Config) -> Config:
    """cfg for a model built on the meta device: shapes only, no memory, no weights read, a 1-class head."""
    meta_cfg = copy.deepcopy(cfg)
    meta_cfg.model.update(pretrained=False, pretrained_file=None, num_classes=1)
    return meta_cfg


def _body_flops(cfg: Config, prompts: int) -> tuple[float, int]:
    with torch.device("meta"):
        model = create_backbone(_meta_config(cfg))
    blocks = model.blocks if hasattr(model, "blocks") else [b for stage in model.layers for b in stage.blocks]
    _PARAMS[(cfg.model.name, cfg.model.img_size, cfg.model.in_chans, cfg.model.kwargs)] = (
        sum(p.numel() for p in model.parameters()), len(blocks), model.embed_dim)  # Swin: its first stage's width
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


def _peft_params(cfg: Config) -> int:
    """Parameters a PEFT baseline trains besides the head (biases, adapters, low-rank factors, scales): its model
    built on the meta device, so nothing is allocated and no weights are read."""
    key = (cfg.model.name, cfg.model.img_size, cfg.model.in_chans, cfg.model.kwargs, cfg.prompt.method,
           repr(cfg.get(cfg.prompt.method)))
    if key not in _PEFT:
        from nvpt.models import build_model

        with torch.device("meta"):
            model = build_model(_meta_config(cfg))
        _PEFT[key] = sum(p.numel() for p in model.tuned_parameters())
    return _PEFT[key]


def checkpoint_bytes(cfg: Config) -> tuple[float, float]:
    """(checkpoint-best, checkpoint-last) bytes: the trainable parameters in float32, and for checkpoint-last the
    optimizer's state too (1 slot for SGD with momentum, 2 for AdamW)."""
    forward_flops(cfg)  # fills _BODY / _PARAMS
    m = cfg.model
    total, depth, dim = _PARAMS[(m.name, m.img_size, m.in_chans, m.kwargs)]
    head = dim * (m.num_classes or 1000) + (m.num_classes or 1000)
    method = cfg.prompt.method
    prompts = 0 if method not in ("vpt_shallow", "vpt_deep", "spike_nvpt") else cfg.prompt.length * dim * (
        1 if method == "vpt_shallow" or (method == "spike_nvpt" and not cfg.prompt.deep) else depth)
    tuned = _peft_params(cfg) if method in PEFT_METHODS else 0
    trainable = (total + head) if method == "full" else head + prompts + tuned
    slots = 2 if cfg.train.optimizer == "adamw" else (1 if cfg.train.momentum else 0)
    return 4.0 * trainable, 4.0 * trainable * (1 + slots)


def run_cost(cfg: Config, epochs_left: int, assume: Assumptions = Assumptions(), evaluate: bool = True,
             eval_share: int = 1) -> RunCost:
    """Estimated seconds for the rest of one run: `epochs_left` epochs (0: only the final evaluation left), and its
    evaluation when `evaluate`, in a pass shared by `eval_share` runs (the corruption is paid once per pass)."""
    flops = forward_flops(cfg)
    train, val, test = image_counts(cfg)
    sets = robustness_sets(cfg.eval)
    n_sets = 1 + len(sets)  # the clean set and every corrupted one (groups like `all` expanded)
    mfu = figure(assume, "mfu")[0]
    gpu_rate = assume.peak_tflops * 1e12 * mfu  # FLOP/s
    workers = max(cfg.data.num_workers, 1)
    uncached = (assume.array_ms if cfg.data.name in ARRAY_DATASETS else figure(assume, "jpeg_ms")[0]) / 1000
    cached = figure(assume, "cached_ms")[0] / 1000
    share = max(eval_share, 1)

    evaluated = val if cfg.eval.split == "val" else test  # the final evaluation's split
    gpu = epochs_left * (train * STEP_FORWARDS[cfg.prompt.method] + val) * flops / gpu_rate
    loader = epochs_left * ((train + val) * cached + assume.epoch_s)  # cached sets are read in the training process
    if epochs_left or evaluate:
        loader += (train + val + test) * uncached / workers  # decoded once
    corruption = io = 0.0
    if evaluate:
        gpu += evaluated * n_sets * flops / gpu_rate
        loader += evaluated * cached / share
        per_image = sum(figure(assume, "cpu_corrupt_ms" if name in DEVICE_CORRUPTIONS_EXCEPT else "gpu_corrupt_ms")[0]
                        for name, _, _ in sets) / 1000
        scale = (cfg.model.img_size or 224) ** 2 / 224 ** 2  # the per-image figures are for 224 px
        corruption = evaluated * per_image * scale / share
    if epochs_left:
        best, last = checkpoint_bytes(cfg)
        writes = best * (epochs_left if val else 1) + last * -(-epochs_left // max(cfg.train.save_every, 1))
        io = writes / (figure(assume, "write_mb_s")[0] * 2**20)
    total = gpu + loader + corruption + io
    return RunCost(train, val, test, n_sets, epochs_left, flops / 1e9, total, gpu, loader, corruption, io)
