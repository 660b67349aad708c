"""Optimizer and the per-iteration warmup + cosine schedule (MAE/DeiT style)."""
from __future__ import annotations

import math

import torch
from torch import nn


def scaled_lr(base_lr: float, batch_size: int) -> float:
    """VPT's linear scaling rule: lr = base_lr * batch / 256."""
    return base_lr * batch_size / 256


def build_optimizer(model: nn.Module, train_cfg, batch_size: int) -> torch.optim.Optimizer:
    """Weight decay on matrices and prompt tensors, none on biases, norms, scales and shifts (<= 1-D,
    .scale, .shift). Parameters the model gives another learning rate (model.lr_scales(), e.g.
    spike.current_lr_scale) get their own group after these two, with lr and `lr_scale` scaled."""
    lr = scaled_lr(train_cfg.base_lr, batch_size)
    lr_scales = model.lr_scales() if hasattr(model, "lr_scales") else {}
    decay, no_decay, scaled = [], [], {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        no_wd = param.ndim <= 1 or name.endswith((".scale", ".shift"))
        if name in lr_scales:
            scaled[name] = {"params": [param], "weight_decay": 0.0 if no_wd else train_cfg.weight_decay,
                            "lr": lr * lr_scales[name], "lr_scale": lr_scales[name]}
        else:
            (no_decay if no_wd else decay).append(param)
    groups = [{"params": decay, "weight_decay": train_cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}, *scaled.values()]
    if train_cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=train_cfg.momentum)
    return torch.optim.AdamW(groups, lr=lr)


class WarmupCosine:
    """lr(it) = linear warmup to the peak over `warmup` iterations, then cosine down to `min_lr`
    (min_lr * lr_scale for a group with an `lr_scale`: its lr stays lr_scale times the others')."""

    def __init__(self, optimizer: torch.optim.Optimizer, total_iters: int, warmup_iters: int, min_lr: float):
        self.optimizer = optimizer
        self.total = max(total_iters, 1)
        self.warmup = min(warmup_iters, self.total)
        self.min_lr = min_lr
        self.peak = [g["lr"] for g in optimizer.param_groups]
        self.iteration = 0
        self._apply()

    def lr_at(self, it: int, peak: float, min_lr: float | None = None) -> float:
        min_lr = self.min_lr if min_lr is None else min_lr
        if it < self.warmup:
            return peak * (it + 1) / self.warmup
        progress = (it - self.warmup) / max(self.total - self.warmup, 1)
        return min_lr + (peak - min_lr) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    def _apply(self) -> None:
        for group, peak in zip(self.optimizer.param_groups, self.peak):
            # a group with its own lr_scale (build_optimizer) keeps that ratio at every step, floor included
            group["lr"] = self.lr_at(self.iteration, peak, self.min_lr * group.get("lr_scale", 1.0))

    def step(self) -> None:
        self.iteration += 1
        self._apply()

    def state_dict(self) -> dict:
        return {"iteration": self.iteration, "peak": self.peak, "total": self.total, "warmup": self.warmup,
                "min_lr": self.min_lr}

    def load_state_dict(self, state: dict) -> None:
        self.iteration, self.peak = state["iteration"], list(state["peak"])
        self.total, self.warmup, self.min_lr = state["total"], state["warmup"], state["min_lr"]
        self._apply()
