"""`train_one_epoch` and `evaluate`: plain functions, DeiT/MAE style.

Batches arrive as [0,1] images, or as uint8 images from a decoded-once set (nvpt.data.cache), which
`unit_float` turns into the same floats on the device; `normalize` runs on the device after an optional corruption,
so every method sees the same noisy pixels before its own normalisation.
"""
from __future__ import annotations

import math
import sys
import time
from contextlib import nullcontext
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from nvpt.data.cache import unit_float
from nvpt.engine.distributed import all_reduce_sum
from nvpt.errors import NVPTError


class NonFiniteLoss(NVPTError):
    """The loss became NaN/inf: the run stops, the last good checkpoint stays."""


class Normalize(nn.Module):
    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return (images - self.mean) / self.std


def autocast_for(device: torch.device, enabled: bool, dtype: torch.dtype):
    """bf16/fp16 autocast on CUDA only; the SFL opts out of it itself (fp32)."""
    if device.type == "cuda" and enabled:
        return torch.autocast("cuda", dtype=dtype)
    return nullcontext()


def progress(iterable, show: bool, **kwargs):
    """tqdm on a terminal; silent in logs and CI."""
    return tqdm(iterable, disable=not (show and sys.stderr.isatty()), leave=False, dynamic_ncols=True, **kwargs)


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") else model


def train_one_epoch(model: nn.Module, loader, optimizer, scheduler, normalize: Normalize, device: torch.device,
                    epoch: int, train_cfg, scaler=None, amp_dtype=torch.bfloat16, rate_penalty: float = 0.0,
                    show_progress: bool = True) -> dict[str, float]:
    model.train()
    loss_sum = correct = seen = 0.0
    start = time.time()
    max_steps = train_cfg.max_steps_per_epoch
    for step, (images, labels) in enumerate(progress(loader, show_progress, desc=f"epoch {epoch}")):
        if max_steps is not None and step >= max_steps:
            break
        images = normalize(unit_float(images.to(device, non_blocking=True)))
        labels = labels.to(device, non_blocking=True)
        with autocast_for(device, train_cfg.amp, amp_dtype):
            logits = model(images)
            loss = F.cross_entropy(logits.float(), labels, label_smoothing=train_cfg.label_smoothing)
        aux = unwrap(model).aux_loss() if rate_penalty > 0 else None
        total = loss + rate_penalty * aux if aux is not None else loss
        if not math.isfinite(total.item()):
            raise NonFiniteLoss(
                f"loss is {total.item()} at epoch {epoch} step {step}: stopped; the last good checkpoint is kept "
                "(lower train.base_lr, set train.clip_grad, or check the data)"
            )
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None and scaler.is_enabled():
            scaler.scale(total).backward()
            scaler.unscale_(optimizer)
            if train_cfg.clip_grad:
                torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], train_cfg.clip_grad)
            scaler.step(optimizer)
            scaler.update()
        else:
            total.backward()
            if train_cfg.clip_grad:
                torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], train_cfg.clip_grad)
            optimizer.step()
        scheduler.step()
        batch = labels.shape[0]
        loss_sum += loss.item() * batch
        correct += (logits.argmax(1) == labels).sum().item()
        seen += batch
    loss_sum, correct, seen = all_reduce_sum([loss_sum, correct, seen], device)
    metrics = {"train_loss": loss_sum / max(seen, 1), "train_acc": 100.0 * correct / max(seen, 1),
               "lr": optimizer.param_groups[0]["lr"], "epoch_time_s": round(time.time() - start, 2)}
    rate = getattr(getattr(unwrap(model), "prompts", None), "last_rate", None)
    if rate is not None:
        metrics["firing_rate"] = float(rate.detach())
    return metrics


@torch.no_grad()
def evaluate(model: nn.Module, loader, normalize: Normalize, device: torch.device,
             corrupt: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
             amp: bool = False, amp_dtype=torch.bfloat16, show_progress: bool = False, desc: str = "eval") -> dict[str, float]:
    """Top-1 accuracy (%) and loss. Loader items: (images [B,C,H,W] in [0,1], labels, sample ids).

    corrupt(images, sample_ids) -> images, applied on [0,1] images before normalisation.
    Counts are summed over DDP ranks, so every rank returns the global accuracy.
    """
    model.eval()
    loss_sum = correct = seen = 0.0
    for images, labels, ids in progress(loader, show_progress, desc=desc):
        images = unit_float(images.to(device, non_blocking=True))
        labels = labels.to(device, non_blocking=True)
        if corrupt is not None:
            images = corrupt(images, ids)
        with autocast_for(device, amp, amp_dtype):
            logits = model(normalize(images)).float()
        loss_sum += F.cross_entropy(logits, labels, reduction="sum").item()
        correct += (logits.argmax(1) == labels).sum().item()
        seen += labels.shape[0]
    loss_sum, correct, seen = all_reduce_sum([loss_sum, correct, seen], device)
    return {"acc": 100.0 * correct / max(seen, 1), "loss": loss_sum / max(seen, 1), "count": int(seen)}
