"""Configuration: every key declared once with its default, type and meaning.

A config file is YAML (read with `yaml.safe_load`) that may name parent files in
`_base_` (a path or a list of paths, relative to the file). Parents are merged
first, the file itself last, then `key.sub=value` overrides from the command line.
Every value is checked against `SCHEMA`; an unknown key names the closest valid
ones, a bad value names the key and what it accepts.

    cfg = load_config("configs/dtd.yaml", ["train.epochs=10", "prompt.length=5"])
    cfg.model.name, cfg.prompt.method, cfg.spike.time_steps
"""
from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import yaml

from nvpt.errors import NVPTError

METHODS = ("linear", "vpt_shallow", "vpt_deep", "spike_nvpt", "full", "bitfit", "adapter", "lora", "ssf")
# the conventional parameter-efficient baselines (nvpt/models/peft_vit.py): no prompts, their own trainable parts
PEFT_METHODS = ("bitfit", "adapter", "lora", "ssf")
# the VTAB-1k natural tasks that torchvision downloads (besides dtd); nvpt/data/torchvision_tasks.py
TORCHVISION_TASKS = ("cifar100", "caltech101", "oxford_flowers102", "oxford_iiit_pet", "svhn")
DATASETS = ("dtd", *TORCHVISION_TASKS, "vtab", "fgvc", "image_folder", "textures", "fashion_mnist", "synthetic")
SYNTHETIC_FAMILIES = ("dead_leaves", "spectral", "sinusoids", "gabor", "fractal")
# The 19 corruptions of ImageNet-C / CIFAR-10-C, grouped by family (nvpt.robustness.corruptions.FAMILIES):
# noise, blur, weather, digital; each family's ImageNet-C "extra" corruption comes last in it.
CORRUPTIONS = ("gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise",
               "defocus_blur", "glass_blur", "motion_blur", "zoom_blur", "gaussian_blur",
               "snow", "frost", "fog", "brightness", "spatter",
               "contrast", "elastic_transform", "pixelate", "jpeg_compression", "saturate")


@dataclass(frozen=True)
class Key:
    default: Any
    kind: str  # int | float | bool | str | int_list | float_list | str_list
    help: str
    choices: tuple | None = None
    min: float | None = None  # inclusive lower bound
    min_exclusive: bool = False  # True: value must be > min
    max: float | None = None  # inclusive upper bound
    nullable: bool = False  # None ("null" in YAML) allowed


def _k(default, kind, help, **kw) -> Key:
    return Key(default, kind, help, **kw)


# fmt: off
SCHEMA: dict[str, Key] = {
    "seed": _k(0, "int", "random seed for init, data order, dropout and spiking noise", min=0),
    "output_dir": _k("runs", "str", "folder that holds run folders"),
    "run_name": _k(None, "str", "run folder name; null: <config stem>-<method>-s<seed>", nullable=True),

    "model.name": _k("vit_base_patch16_224.orig_in21k", "str", "any timm VisionTransformer (vit_*, deit_*, ...) or SwinTransformer (swin_*) name, with optional .tag"),
    "model.pretrained": _k(True, "bool", "load the timm hub weights of model.name (needs internet or a warm hub cache)"),
    "model.pretrained_file": _k(None, "str", "local .safetensors/.pth/.bin backbone weights (used instead of the hub)", nullable=True),
    "model.pretrained_file_howto": _k(None, "str", "how to make model.pretrained_file, told in the error when the file is missing (e.g. the pretraining command)", nullable=True),
    "model.num_classes": _k(None, "int", "classifier outputs; null: taken from the dataset", min=1, nullable=True),
    "model.img_size": _k(None, "int", "input size; null: the model's default", min=1, nullable=True),
    "model.in_chans": _k(None, "int", "input channels; null: the model's default (3)", min=1, nullable=True),
    "model.kwargs": _k(None, "str", "extra timm.create_model keyword args as a YAML mapping string, e.g. '{embed_dim: 192}'", nullable=True),

    "prompt.method": _k("spike_nvpt", "str", "how the frozen backbone is adapted", choices=METHODS),
    "prompt.length": _k(10, "int", "prompt tokens per layer (P)", min=0),
    "prompt.dropout": _k(0.0, "float", "dropout on prompt tokens, an independent mask per sample", min=0.0, max=1.0),
    "prompt.deep": _k(True, "bool", "spike_nvpt only: prompts before every block (true) or the first one only (false)"),

    "adapter.bottleneck": _k(64, "int", "adapter: hidden width of AdaptFormer's parallel bottleneck adapter in every block's MLP (64: AdaptFormer's)", min=1),
    "adapter.scale": _k(0.1, "float", "adapter: the fixed scale s on the adapter's output (0.1: AdaptFormer's)", min=0.0, min_exclusive=True),
    "adapter.dropout": _k(0.0, "float", "adapter: dropout between the adapter's ReLU and its up-projection (training only)", min=0.0, max=1.0),
    "lora.rank": _k(8, "int", "lora: rank r of the low-rank update B A (Hugging Face peft LoraConfig.r)", min=1),
    "lora.alpha": _k(8.0, "float", "lora: peft's lora_alpha; the update is scaled by alpha / rank", min=0.0, min_exclusive=True),
    "lora.dropout": _k(0.0, "float", "lora: peft's lora_dropout on the LoRA branch's input (training only)", min=0.0, max=1.0),
    "lora.mlp": _k(False, "bool", "lora: also adapt every block's MLP (fc1, fc2); false: the attention's qkv projections only"),
    "ssf.init_std": _k(0.02, "float", "ssf: scales start at N(1, init_std^2), shifts at N(0, init_std^2) (SSF's init)", min=0.0),

    "spike.time_steps": _k(2, "int", "T: steps the Signal Filtering Layer integrates the prompt current (2: best in docs/results.md)", min=1),
    "spike.v_threshold": _k(1.0, "float", "IF neuron firing threshold", min=0.0, min_exclusive=True),
    "spike.noise_std": _k(0.3, "float", "std of fresh Gaussian noise added to the prompt current at every step (training only)", min=0.0),
    "spike.reset": _k("soft", "str", "after a spike: soft subtracts the threshold, hard resets to 0", choices=("soft", "hard")),
    "spike.discretize": _k("rate", "str", "binary prompt = firing rate >= spike.rate_threshold (rate) or the last step's spike (last)", choices=("rate", "last")),
    "spike.rate_threshold": _k(0.5, "float", "firing rate at which a prompt element is 1 (discretize=rate)", min=0.0, min_exclusive=True, max=1.0),
    "spike.filter": _k("if", "str", "if: integrate-and-fire Signal Filtering Layer; none: binarise the current directly (ablation)", choices=("if", "none")),
    "spike.scale": _k("channel", "str", "learned scale on the binary prompt: per channel, per layer, or none", choices=("channel", "layer", "none")),
    "spike.scale_init": _k(None, "float", "initial scale; null: the VPT init bound sqrt(6/(3*ph*pw+D))", nullable=True),
    "spike.center": _k(False, "bool", "map binary {0,1} to {-1,+1} before scaling (zero-mean tokens); false keeps {0,1} as in the paper"),
    "spike.surrogate": _k("atan", "str", "surrogate gradient of the Heaviside spike", choices=("atan", "sigmoid")),
    "spike.surrogate_alpha": _k(2.0, "float", "sharpness of the surrogate gradient", min=0.0, min_exclusive=True),
    "spike.init_low": _k(0.0, "float", "latent current U ~ Uniform(init_low, init_high) * v_threshold"),
    "spike.init_high": _k(1.0, "float", "see spike.init_low"),
    "spike.target_rate": _k(None, "float", "firing rate the penalty pulls toward; null: no penalty", min=0.0, max=1.0, nullable=True),
    "spike.rate_penalty": _k(0.0, "float", "weight of (mean firing rate - target_rate)^2 in the loss", min=0.0),
    "spike.backend": _k("auto", "str", "SpikingJelly backend: auto = cupy on CUDA when cupy imports, else torch", choices=("auto", "cupy", "torch")),
    "spike.shift": _k("none", "str", "learned shift added to the decoded prompt, tokens = scale * b + shift: per channel (shared by a layer's tokens, init 0) or none", choices=("none", "channel")),
    "spike.noise_schedule": _k("constant", "str", "training noise std = noise_std * factor, the factor going from 1 at the first training step to 0 at the last: constant (always 1), linear or cosine", choices=("constant", "linear", "cosine")),
    "spike.persistent": _k(False, "bool", "the IF membrane potential persists from one training iteration to the next (reset only by spikes); eval and deploy use the bits of the last training iteration"),
    "spike.gradient": _k("surrogate", "str", "gradient to the latent current U: surrogate (through the IF dynamics, straight-through on the rate) or ste (the binary prompt's gradient passed to U unchanged)", choices=("surrogate", "ste")),
    "spike.current_lr_scale": _k(1.0, "float", "learning rate of the latent current U relative to the other parameters (!= 1: U gets its own optimizer group)", min=0.0, min_exclusive=True),
    "spike.stochastic": _k(False, "bool", "training: b ~ Bernoulli(firing rate) (BinaryConnect's stochastic binarisation); eval: the deterministic rate rule (discretize=rate only)"),

    "data.name": _k("dtd", "str", "dataset", choices=DATASETS),
    "data.root": _k("data", "str", "folder holding the dataset (see README: Datasets)"),
    "data.task": _k(None, "str", "vtab: task folder under data.root (one of the 19 of nvpt/suites.py, e.g. dtd, cifar); fgvc: cub, nabirds, oxford_flowers, stanford_dogs or stanford_cars", nullable=True),
    "data.protocol": _k("final", "str", "vtab, dtd and the torchvision tasks: tune = train on 800, validate on 200; final = train on all 1,000, no validation. fgvc: tune = train.json + val.json; final = train.json, no validation", choices=("tune", "final")),
    "data.vtab1k": _k(True, "bool", "dtd and the torchvision tasks: VTAB-1k, 800 + 200 images drawn from the official splits with data.split_seed; false: the full official splits"),
    "data.split_seed": _k(0, "int", "seed of the VTAB-1k 800/200 draw (and of Caltech-101's 30-per-class training split, of the splits that data.download builds for vtab and fgvc): fixed across training seeds, as the released lists are", min=0),
    "data.partition": _k(1, "int", "dtd: official partition 1..10", min=1, max=10),
    "data.download": _k(False, "bool", "dtd, the torchvision tasks, fashion_mnist: download through torchvision when missing (needs internet); vtab: build a missing task folder's lists from torchvision's download where it has the source (docs/datasets.md); fgvc: write the split files of Oxford Flowers (downloaded) and Stanford Cars (torchvision's layout)"),
    "data.transform": _k("vtab", "str", "vtab: resize to the model size; fgvc: random resized crop + flip for training", choices=("vtab", "fgvc")),
    "data.mean": _k(None, "float_list", "normalisation mean; null: the backbone's timm pretrained config", nullable=True),
    "data.std": _k(None, "float_list", "normalisation std; null: the backbone's timm pretrained config", nullable=True),
    "data.val_fraction": _k(0.1, "float", "image_folder/fashion_mnist/textures/synthetic, and tasks without an official val split under data.vtab1k=false: share of training data held out for validation", min=0.0, max=0.9),
    "data.grayscale": _k(False, "bool", "textures: grayscale images (replicated to the model's channels)"),
    "data.crop_size": _k(64, "int", "textures: side of the square crops cut from each photograph; synthetic: side of the rendered images", min=8),
    "data.train_per_class": _k(60, "int", "textures, synthetic: training images per class", min=1),
    "data.test_per_class": _k(30, "int", "textures, synthetic: test images per class", min=1),
    "data.val_per_class": _k(None, "int", "textures, synthetic: validation images per class; null: round(train_per_class * val_fraction)", min=1, nullable=True),
    "data.synthetic_classes": _k(400, "int", "synthetic: number of procedurally generated classes (families take turns)", min=2),
    "data.synthetic_families": _k(list(SYNTHETIC_FAMILIES), "str_list", "synthetic: generator families of the classes", choices=SYNTHETIC_FAMILIES),
    "data.generator_seed": _k(0, "int", "synthetic: seed of the class parameters and of every rendered image (the task itself)", min=0),
    "data.crop_scale": _k([0.08, 1.0], "float_list", "synthetic with data.transform=fgvc: area range of the random resized crops"),
    "data.random_grayscale": _k(0.0, "float", "synthetic with data.transform=fgvc: probability of a grayscale training image", min=0.0, max=1.0),
    "data.subset": _k(None, "int", "fashion_mnist: use only the first N training images (for a quick run)", min=1, nullable=True),
    "data.batch_size": _k(64, "int", "global batch size (split across torchrun processes)", min=1),
    "data.eval_batch_size": _k(128, "int", "batch size for evaluation", min=1),
    "data.num_workers": _k(4, "int", "data loader worker processes (a cached set is read in the main process)", min=0),
    "data.cache": _k("auto", "str", "decode once (docs/datasets.md): keep each split's decoded, resized images as uint8, bit for bit the uncached images (deterministic transforms only); auto = the disk cache for image files and arrays, memory for the textures; memory (disk above data.cache_memory_gb); disk; off", choices=("auto", "memory", "disk", "off")),
    "data.cache_dir": _k(None, "str", "folder of the disk cache (uncompressed .npy files, shared by processes); null: <output_dir>/data-cache", nullable=True),
    "data.cache_memory_gb": _k(2.0, "float", "largest set kept in memory (GB of uint8); a larger one goes to the disk cache", min=0.0),

    "train.epochs": _k(100, "int", "training epochs", min=1),
    "train.optimizer": _k("sgd", "str", "optimizer", choices=("sgd", "adamw")),
    "train.base_lr": _k(0.1, "float", "learning rate for batch 256; actual lr = base_lr * batch_size / 256 (as VPT)", min=0.0, min_exclusive=True),
    "train.weight_decay": _k(1e-4, "float", "weight decay (not applied to biases, norms, scales)", min=0.0),
    "train.momentum": _k(0.9, "float", "SGD momentum", min=0.0, max=1.0),
    "train.warmup_epochs": _k(10, "int", "linear warmup length, stepped per iteration", min=0),
    "train.min_lr": _k(0.0, "float", "cosine schedule floor", min=0.0),
    "train.clip_grad": _k(None, "float", "max gradient norm; null: no clipping", min=0.0, min_exclusive=True, nullable=True),
    "train.label_smoothing": _k(0.0, "float", "cross-entropy label smoothing", min=0.0, max=1.0),
    "train.amp": _k(True, "bool", "mixed precision for the backbone on CUDA (ignored on CPU)"),
    "train.amp_dtype": _k("bfloat16", "str", "autocast dtype on CUDA", choices=("bfloat16", "float16")),
    "train.device": _k("auto", "str", "auto: cuda when available, else cpu", choices=("auto", "cuda", "cpu")),
    "train.threads": _k(None, "int", "torch CPU threads; null: leave torch's default", min=1, nullable=True),
    "train.resume": _k(None, "str", "path of a run folder or checkpoint to continue exactly", nullable=True),
    "train.save_every": _k(1, "int", "write the resumable checkpoint-last every N epochs and after the last (a resume repeats the epochs since the last write, exactly); the full recipe uses 10: its checkpoint holds every weight and AdamW's moments, about 1 GB for ViT-B/16. checkpoint-best is written on each validation improvement, or once after the last epoch when nothing is selected (no validation split)", min=1),
    "train.max_steps_per_epoch": _k(None, "int", "cap iterations per epoch (quick checks)", min=1, nullable=True),

    "eval.gaussian_std": _k([0.05, 0.1, 0.2, 0.3, 0.5], "float_list", "Gaussian noise sigmas (on [0,1] images) for the final evaluation"),
    "eval.corruptions": _k([], "str_list", "corruptions for the final evaluation: names (gaussian_noise, fog, ...), families (noise, blur, weather, digital), common (the 15 ImageNet-C ones), extra (the 4 others) or all (docs/robustness.md)"),
    "eval.severities": _k([1, 2, 3, 4, 5], "int_list", "severities of eval.corruptions"),
    "eval.split": _k("test", "str", "split of the final evaluation: test, or val for choices made on validation (the test split stays untouched)", choices=("test", "val")),
    "eval.seed": _k(0, "int", "seed of the evaluation noise: the same noisy test images for every method, training seed and rerun", min=0),
    "eval.corruption_table": _k("auto", "str", "severity constants: imagenet, cifar, or auto (cifar below 64 px)", choices=("auto", "imagenet", "cifar")),
}
# fmt: on


class _Loader(yaml.SafeLoader):
    """yaml.SafeLoader that also reads 1e-3, 2E5 and 5e+2 as floats (YAML 1.2). PyYAML follows
    YAML 1.1, which needs a dot and a signed exponent (1.0e-3) and returns the string '1e-3'."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789"))


def _load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass: Python object tags stay refused


SECTIONS = sorted({name.split(".")[0] for name in SCHEMA if "." in name})


class Config(dict):
    """Nested dict with attribute access: cfg.model.name == cfg["model"]["name"]."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def get_path(self, dotted: str) -> Any:
        node: Any = self
        for part in dotted.split("."):
            node = node[part]
        return node

    def to_dict(self) -> dict:
        return {k: v.to_dict() if isinstance(v, Config) else v for k, v in self.items()}


def _suggest(name: str) -> str:
    close = difflib.get_close_matches(name, list(SCHEMA), n=3, cutoff=0.5)
    if not close:
        section = name.split(".")[0]
        close = [k for k in SCHEMA if k.startswith(section + ".")][:6]
    return ", ".join(close) if close else ", ".join(list(SCHEMA)[:6]) + ", ..."


def _check_value(name: str, value: Any) -> Any:
    """Return `value` coerced to the key's type, or raise NVPTError naming the key."""
    key = SCHEMA[name]
    if value is None:
        if key.nullable:
            return None
        raise NVPTError(f"config key '{name}' may not be null ({key.help})")

    def bad(expected: str) -> NVPTError:
        return NVPTError(f"config key '{name}' must be {expected}, got {value!r} ({key.help})")

    def scalar(v: Any, kind: str) -> Any:
        if kind == "bool":
            if isinstance(v, bool):
                return v
            raise bad("true or false")
        if kind == "int":
            if isinstance(v, bool) or not isinstance(v, int):
                if isinstance(v, float) and v.is_integer():
                    return int(v)
                raise bad("an integer")
            return v
        if kind == "float":
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise bad("a finite number")
            return float(v)
        if kind == "str":
            if not isinstance(v, str):
                raise bad("a string")
            return v
        raise AssertionError(kind)

    if key.kind.endswith("_list"):
        if not isinstance(value, (list, tuple)):
            raise bad(f"a list of {key.kind[:-5]}s")
        out = [scalar(v, key.kind[:-5]) for v in value]
        items = out
    else:
        out = scalar(value, key.kind)
        items = [out]
    for item in items:
        if key.choices is not None and item not in key.choices:
            raise NVPTError(f"config key '{name}' must be one of {', '.join(key.choices)}; got {item!r}")
        if key.min is not None and (item < key.min or (key.min_exclusive and item == key.min)):
            op = ">" if key.min_exclusive else ">="
            raise NVPTError(f"config key '{name}' must be {op} {key.min}, got {item!r} ({key.help})")
        if key.max is not None and item > key.max:
            raise NVPTError(f"config key '{name}' must be <= {key.max}, got {item!r} ({key.help})")
    return out


def _flatten(tree: Any, source: str, prefix: str = "") -> dict[str, Any]:
    if not isinstance(tree, dict):
        raise NVPTError(f"{source}: expected a mapping of config keys, got {type(tree).__name__}")
    flat: dict[str, Any] = {}
    for k, v in tree.items():
        name = f"{prefix}{k}"
        if name in SCHEMA:
            flat[name] = v
        elif isinstance(v, dict) and name in SECTIONS:
            flat.update(_flatten(v, source, name + "."))
        else:
            raise NVPTError(f"{source}: unknown config key '{name}'; did you mean: {_suggest(name)}?")
    return flat


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Flat {key: value} of one file after merging its `_base_` parents."""
    path = path.resolve()
    if path in seen:
        raise NVPTError(f"config {path}: _base_ inheritance loops back to itself")
    if not path.is_file():
        raise NVPTError(f"config file not found: {path} (pass a YAML file, e.g. configs/dtd.yaml)")
    try:
        tree = _load_yaml(path.read_text()) or {}
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise NVPTError(f"config {path}: not valid safe YAML ({first}); Python object tags are refused") from None
    if not isinstance(tree, dict):
        raise NVPTError(f"config {path}: expected a mapping of config keys at the top level")
    bases = tree.pop("_base_", [])
    bases = [bases] if isinstance(bases, str) else bases
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise NVPTError(f"config {path}: _base_ must be a path or a list of paths")
    merged: dict[str, Any] = {}
    for base in bases:
        merged.update(_read_yaml(path.parent / base, seen + (path,)))
    merged.update(_flatten(tree, str(path)))
    return merged


def parse_override(text: str) -> tuple[str, Any]:
    """'train.epochs=10' -> ('train.epochs', 10); the value is parsed as YAML."""
    if "=" not in text:
        raise NVPTError(f"override {text!r} must look like key.sub=value (e.g. train.epochs=10)")
    name, raw = text.split("=", 1)
    name = name.strip()
    if name not in SCHEMA:
        raise NVPTError(f"unknown config key '{name}' in override {text!r}; did you mean: {_suggest(name)}?")
    try:
        value = _load_yaml(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    if SCHEMA[name].kind == "str" and value is not None and not isinstance(value, str):
        value = raw.strip()  # e.g. run_name=123 stays a string
    return name, value


def build_config(flat: dict[str, Any]) -> Config:
    """Defaults + `flat` values, checked, as a nested Config."""
    values = {name: key.default for name, key in SCHEMA.items()}
    for name, value in flat.items():
        if name not in SCHEMA:
            raise NVPTError(f"unknown config key '{name}'; did you mean: {_suggest(name)}?")
        values[name] = value
    cfg = Config()
    for name, value in values.items():
        value = _check_value(name, value)
        node = cfg
        *parents, leaf = name.split(".")
        for part in parents:
            node = node.setdefault(part, Config())
        node[leaf] = list(value) if isinstance(value, list) else value
    _check_relations(cfg)
    return cfg


def _check_relations(cfg: Config) -> None:
    if cfg.spike.init_high < cfg.spike.init_low:
        raise NVPTError("config keys spike.init_low/init_high: init_high must be >= init_low")
    if cfg.data.name == "vtab" and not cfg.data.task:
        raise NVPTError("config key 'data.task' must name the VTAB task folder when data.name=vtab (e.g. data.task=dtd)")
    if cfg.data.name == "fgvc" and not cfg.data.task:
        raise NVPTError("config key 'data.task' must name the FGVC data set when data.name=fgvc (cub, nabirds, "
                        "oxford_flowers, stanford_dogs or stanford_cars)")
    if (cfg.data.mean is None) != (cfg.data.std is None):
        raise NVPTError("config keys data.mean and data.std must be given together (or both null)")
    if cfg.data.mean is not None and len(cfg.data.mean) != len(cfg.data.std):
        raise NVPTError("config keys data.mean and data.std must have the same length")
    scale = cfg.data.crop_scale
    if len(scale) != 2 or not 0 < scale[0] <= scale[1] <= 1:
        raise NVPTError(f"config key 'data.crop_scale' must be [min, max] with 0 < min <= max <= 1, got {scale}")
    if not cfg.data.synthetic_families:
        raise NVPTError("config key 'data.synthetic_families' must name at least one family")
    if cfg.spike.persistent and cfg.spike.filter != "if":
        raise NVPTError("config key 'spike.persistent' needs the IF filter (spike.filter=if): spike.filter=none has no membrane")
    if cfg.spike.stochastic and cfg.spike.discretize != "rate":
        raise NVPTError("config key 'spike.stochastic' samples bits from the firing rate: it needs spike.discretize=rate")
    if cfg.prompt.length == 0 and cfg.prompt.method == "spike_nvpt":
        raise NVPTError("config key 'prompt.length' must be >= 1 for prompt.method=spike_nvpt")


def load_config_text(text: str, source: str = "<text>") -> Config:
    """A Config from YAML text without `_base_` (e.g. the config stored inside an exported file)."""
    try:
        tree = _load_yaml(text) or {}
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise NVPTError(f"config {source}: not valid safe YAML ({first}); Python object tags are refused") from None
    return build_config(_flatten(tree, source))


def load_config(path: str | Path | None = None, overrides: Iterable[str] = ()) -> Config:
    """Read a YAML config (with `_base_` parents), apply `key=value` overrides, check everything."""
    flat = _read_yaml(Path(path)) if path is not None else {}
    for text in overrides:
        name, value = parse_override(text)
        flat[name] = value
    return build_config(flat)


def check_pretrained_file(cfg: Config) -> None:
    """model.pretrained_file, when set, must be a file: else one line naming it and, when the config says
    (model.pretrained_file_howto), how to make it. Cheap: callers check before any run folder exists."""
    path = cfg.model.pretrained_file
    if path and not Path(path).is_file():
        howto = cfg.model.pretrained_file_howto
        raise NVPTError(f"weights file not found: {path} (model.pretrained_file); "
                        + (howto if howto else "pass an existing file, or model.pretrained_file=null for random init"))


def dump_config(cfg: Config, path: str | Path | None = None) -> str:
    """YAML text of the fully resolved config (written to `path` when given); load_config reads it back identically."""
    text = yaml.safe_dump(cfg.to_dict(), sort_keys=False)
    if path is not None:
        Path(path).write_text(text)
    return text


def describe_keys() -> str:
    """Markdown table of every key (used for docs/config.md)."""
    rows = ["| key | default | meaning |", "| --- | --- | --- |"]
    for name, key in SCHEMA.items():
        allowed = f" One of: {', '.join(key.choices)}." if key.choices else ""
        rows.append(f"| `{name}` | `{key.default!r}` | {key.help}.{allowed} |")
    return "\n".join(rows)
