"""The training part of a run: config -> data -> model -> epochs -> the best checkpoint, deployed.

`train` writes the run folder's resolved `config.yaml`, `metrics.jsonl` (one JSON line per
epoch), `checkpoint-last.safetensors` (resumable; every train.save_every epochs and after the
last) and `checkpoint-best.safetensors` (best validation accuracy, written on each improvement;
without a validation split the final model, written once after the last epoch), and returns the
deployed best model with the test loader. The evaluation that follows (clean and corrupted test
accuracy, `results.json` / `results.md`) is nvpt.pipeline's, downstream of this package: a
folder without `results.json` is an unfinished run, which `train.resume` continues exactly.
"""
from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import timm
import torch
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler

from nvpt.config import Config, dump_config
from nvpt.data import DataBundle, build_datasets
from nvpt.data.cache import CachedImages, cached_dataset, deterministic
from nvpt.engine.checkpoint import (BEST, LAST, atomic_write_text, load_checkpoint, load_model_state, model_identity,
                                   read_checkpoint, save_checkpoint)
from nvpt.engine.distributed import DistInfo, barrier
from nvpt.engine.loop import Normalize, NonFiniteLoss, evaluate, train_one_epoch
from nvpt.engine.optim import build_optimizer, WarmupCosine
from nvpt.errors import NVPTError
from nvpt.models import build_model
from nvpt.spiking.backend import describe_device, run_backend


class IndexedDataset(Dataset):
    """(image, label) -> (image, label, index): the index seeds each sample's evaluation noise."""

    def __init__(self, base: Dataset):
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index):
        image, label = self.base[index]
        if not isinstance(index, int):  # a batch of indices (a cached set): ids as a tensor, as collation makes them
            index = torch.as_tensor(index, dtype=torch.int64)
        return image, label, index


class EpochBatchSampler(torch.utils.data.BatchSampler):
    """The batches DataLoader(batch_size=B) would form from `sampler`, handed to a dataset that reads a whole
    batch at once (CachedImages); set_epoch reaches the DistributedSampler inside."""

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)


class ShardSampler(torch.utils.data.Sampler):
    """Evaluation shard rank::world without padding, so every sample counts exactly once."""

    def __init__(self, length: int, dist: DistInfo):
        self.indices = list(range(dist.rank, length, dist.world_size))

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(cfg: Config, dist: DistInfo) -> torch.device:
    want = cfg.train.device
    if want == "cuda" and not torch.cuda.is_available():
        raise NVPTError("train.device=cuda but CUDA is not available; use train.device=auto or cpu")
    if want == "cuda" or (want == "auto" and torch.cuda.is_available()):
        return torch.device("cuda", dist.local_rank)
    return torch.device("cpu")


def backbone_data_config(cfg: Config) -> tuple[int, int, tuple, tuple]:
    """Input size, channels and the normalisation of the backbone's timm pretrained config."""
    try:
        pcfg = timm.models.get_pretrained_cfg(cfg.model.name) or timm.models.get_pretrained_cfg(cfg.model.name.split(".")[0])
    except Exception:
        pcfg = None
    input_size = getattr(pcfg, "input_size", None) or (3, 224, 224)
    img_size = cfg.model.img_size or input_size[-1]
    in_chans = cfg.model.in_chans or 3
    mean = tuple(getattr(pcfg, "mean", None) or (0.485, 0.456, 0.406))
    std = tuple(getattr(pcfg, "std", None) or (0.229, 0.224, 0.225))
    return img_size, in_chans, mean, std


def prepare_data(cfg: Config) -> tuple[DataBundle, int]:
    """Datasets, and num_classes resolved from them when the config leaves it null."""
    img_size, in_chans, mean, std = backbone_data_config(cfg)
    bundle = build_datasets(cfg, img_size, in_chans, mean, std)
    if cfg.model.num_classes is None:
        cfg.model["num_classes"] = bundle.num_classes
    elif cfg.model.num_classes < bundle.num_classes:
        raise NVPTError(f"model.num_classes={cfg.model.num_classes} but the dataset has {bundle.num_classes} classes; "
                        "set model.num_classes=null to take it from the dataset")
    return bundle, img_size


def make_loader(dataset: Dataset, batch_size: int, cfg: Config, dist: DistInfo, train: bool, device: torch.device,
                cache: bool = True):
    """A DataLoader with a private generator: drawing its workers' base seed never advances the
    global RNG (prompt dropout), so a resumed run draws the same numbers as an uninterrupted one.

    cache: a set with a deterministic transform is decoded once (nvpt.data.cache, data.cache) and read in
    this process, no workers: it yields uint8 images, which the loop turns into floats on the device
    (unit_float). Otherwise data.num_workers workers decode; they stay up across epochs when the transform
    is deterministic, and a training set with random augmentation restarts them every epoch, reseeded from
    (seed, epoch) by run_training."""
    if cache:
        dataset = cached_dataset(dataset, cfg)
    generator = torch.Generator()
    generator.manual_seed(cfg.seed)
    in_process = isinstance(dataset, CachedImages)
    persistent = cfg.data.num_workers > 0 and (not train or deterministic(dataset))
    if train:
        sampler = DistributedSampler(dataset, num_replicas=dist.world_size, rank=dist.rank, shuffle=True, seed=cfg.seed)
    else:
        dataset, sampler = IndexedDataset(dataset), ShardSampler(len(dataset), dist)
    if in_process:  # whole batches read from the decoded array in this process: no workers, no collation
        return DataLoader(dataset, batch_size=None, sampler=EpochBatchSampler(sampler, batch_size, drop_last=False),
                          num_workers=0, pin_memory=device.type == "cuda", generator=generator)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=cfg.data.num_workers,
                      pin_memory=device.type == "cuda", drop_last=False, generator=generator,
                      persistent_workers=persistent)


def default_run_dir(cfg: Config, config_path: str | Path | None) -> Path:
    stem = Path(config_path).stem if config_path else "run"
    return Path(cfg.output_dir) / (cfg.run_name or f"{stem}-{cfg.prompt.method}-s{cfg.seed}")


def resume_source(resume: str) -> tuple[Path, Path | None]:
    """train.resume may name a run folder or a checkpoint file -> (run_dir, checkpoint).

    A run folder with config.yaml but no checkpoint yet (stopped during epoch 0) gives checkpoint
    None: the run restarts from epoch 0 in that folder.
    """
    path = Path(resume)
    if path.is_dir() and not (path / LAST).exists() and (path / "config.yaml").is_file() \
            and not (path / "results.json").exists():
        return path, None
    ckpt = path / LAST if path.is_dir() else path
    if not ckpt.is_file():
        raise NVPTError(f"train.resume={resume}: no checkpoint at {ckpt} (pass a run folder holding {LAST})")
    return ckpt.parent, ckpt


@dataclass
class Trained:
    """What `train` leaves for the evaluation: the best weights, deployed, and how to feed them the evaluation split."""

    run_dir: Path
    model: torch.nn.Module
    eval_loader: DataLoader  # the split of eval.split (test by default)
    normalize: Normalize
    device: torch.device
    img_size: int
    use_amp: bool
    amp_dtype: torch.dtype
    best: dict
    history: list[dict]
    images: dict[str, int]  # train / val / test set sizes (val 0: no validation split)
    say: Callable[[str], None]
    sfl_backend: str = "none"  # cupy | torch | none (no IF neurons): the Signal Filtering Layer's backend in training
    device_name: str = "cpu"  # "cuda:0 NVIDIA H200" or "cpu"
    trainable_params: int = 0  # parameters the method trained (counted before deploy() folds any of them)


def check_backend(cfg: Config, device: torch.device) -> str:
    """The SFL backend this run uses (cupy, torch, or none for a method without IF neurons). A spike_nvpt run on a
    backend this machine lacks (spike.backend=cupy without CUDA or CuPy) fails here, before a run folder exists,
    instead of at the first forward pass."""
    return run_backend(cfg.prompt.method, cfg.spike.filter, cfg.spike.backend, device)


def train(cfg: Config, dist: DistInfo, config_path: str | Path | None = None, log: Callable[[str], None] = print,
          show_progress: bool = True) -> Trained:
    """Train per cfg in the process group `dist` (init_distributed; the caller ends it after evaluating) and return
    the best checkpoint's model, deployed."""
    device = resolve_device(cfg, dist)
    sfl_backend = check_backend(cfg, device)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    say = log if dist.is_main else (lambda _msg: None)

    # data and model first: bad input fails before a run folder exists
    seed_everything(cfg.seed)
    bundle, img_size = prepare_data(cfg)
    seed_everything(cfg.seed)  # identical init on every rank and in every rerun
    model = build_model(cfg).to(device)
    identity = model_identity(model, cfg)
    normalize = Normalize(bundle.mean, bundle.std).to(device)
    if cfg.data.batch_size % dist.world_size:
        raise NVPTError(f"data.batch_size={cfg.data.batch_size} must divide by the {dist.world_size} torchrun processes")
    per_rank_batch = cfg.data.batch_size // dist.world_size
    train_loader = make_loader(bundle.train, per_rank_batch, cfg, dist, True, device)
    val_loader = make_loader(bundle.val, cfg.data.eval_batch_size, cfg, dist, False, device) if bundle.val else None
    test_loader = make_loader(bundle.test, cfg.data.eval_batch_size, cfg, dist, False, device)
    if cfg.eval.split == "val" and val_loader is None:
        raise NVPTError(f"eval.split=val but {cfg.data.name} has no validation split here; set data.val_fraction > 0 "
                        "(or data.val_per_class) or eval.split=test")

    steps = len(train_loader) if cfg.train.max_steps_per_epoch is None else min(len(train_loader), cfg.train.max_steps_per_epoch)
    optimizer = build_optimizer(model, cfg.train, cfg.data.batch_size)
    scheduler = WarmupCosine(optimizer, steps * cfg.train.epochs, steps * cfg.train.warmup_epochs, cfg.train.min_lr)
    model.set_training_steps(steps * cfg.train.epochs)  # spike.noise_schedule: a function of (step, total)
    amp_dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16}[cfg.train.amp_dtype]
    use_amp = cfg.train.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    train_model = model
    if dist.enabled:
        train_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)

    start_epoch, history, best = 0, [], {"acc": -1.0, "epoch": -1}
    if cfg.train.resume:
        run_dir, ckpt = resume_source(cfg.train.resume)
        if ckpt is None:
            say(f"{run_dir} has no checkpoint yet: restarting it from epoch 0")
        else:
            meta = load_checkpoint(ckpt, model, identity, optimizer, scheduler, scaler)
            start_epoch, history, best = meta["epoch"] + 1, meta["history"], meta["best"]
            say(f"resumed {ckpt} at epoch {start_epoch}")
    else:
        run_dir = default_run_dir(cfg, config_path)
        if dist.is_main and run_dir.exists() and any(run_dir.iterdir()):
            raise NVPTError(f"run folder {run_dir} already exists; pass train.resume={run_dir} to continue it "
                            "or run_name=<new name> for a new run")
    if dist.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        dump_config(cfg, run_dir / "config.yaml")
    trainable_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    say(f"run folder {run_dir}: {cfg.prompt.method} on {cfg.data.name} ({len(bundle.train)} train images, "
        f"{bundle.num_classes} classes), {trainable_params:,} trainable parameters, device {device}")

    for epoch in range(start_epoch, cfg.train.epochs):
        train_loader.sampler.set_epoch(epoch)
        train_loader.generator.manual_seed(cfg.seed * 1_000_003 + epoch)  # worker augmentation: f(seed, epoch)
        line = {"epoch": epoch}
        line.update(train_one_epoch(train_model, train_loader, optimizer, scheduler, normalize, device, epoch,
                                    cfg.train, scaler, amp_dtype, cfg.spike.rate_penalty, show_progress))
        if val_loader is not None:
            val = evaluate(model, val_loader, normalize, device, amp=use_amp, amp_dtype=amp_dtype)
            if not math.isfinite(val["loss"]):  # this epoch's weights diverged: keep the previous checkpoint
                raise NonFiniteLoss(
                    f"validation loss is {val['loss']} after epoch {epoch} (step {steps - 1}): stopped; the last "
                    "good checkpoint is kept (lower train.base_lr, set train.clip_grad, or check the data)")
            line.update(val_acc=val["acc"], val_loss=val["loss"])
        score = line.get("val_acc", float(epoch))  # no validation split: the last epoch is the best
        improved = score > best["acc"]
        if improved:
            best = {"acc": score, "epoch": epoch}
        line["best_epoch"] = best["epoch"]
        history.append(line)
        if dist.is_main:
            last_epoch = epoch == cfg.train.epochs - 1
            # checkpoint-best: on each improvement when validation selects; without validation nothing is
            # selected and the final model is written once, at the end (not every epoch: 1.4 GB for `full`)
            if (improved and val_loader is not None) or (val_loader is None and last_epoch):
                save_checkpoint(run_dir / BEST, model, identity, epoch=epoch, best=best)
            if (epoch + 1) % cfg.train.save_every == 0 or last_epoch:
                save_checkpoint(run_dir / LAST, model, identity, optimizer, scheduler, scaler,
                                epoch=epoch, best=best, history=history)
            atomic_write_text(run_dir / "metrics.jsonl", "".join(json.dumps(h) + "\n" for h in history))
        say(json.dumps(line))
        barrier()

    # the best weights, deployed, for the evaluation
    tensors, _ = read_checkpoint(run_dir / BEST)
    load_model_state(model, tensors, run_dir / BEST)
    model.deploy()
    images = {"train": len(bundle.train), "val": len(bundle.val) if bundle.val else 0, "test": len(bundle.test)}
    eval_loader = val_loader if cfg.eval.split == "val" else test_loader  # val: choices made without the test split
    return Trained(run_dir, model, eval_loader, normalize, device, img_size, use_amp, amp_dtype, best,
                   history, images, say, sfl_backend, describe_device(device), trainable_params)
