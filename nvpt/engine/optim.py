"""Optimizer and the per-iteration warmup + cosine schedule (MAE/DeiT style)."""
from __future__ import annotations

import math

import torch
from torch import nn


def scaled_lr(base_lr: float, batch_size: int) -> float:
    """VPT's linear scaling rule: lr = base_lr * batch / 256."""
    return base_lr * batch_size / 256


def build_optimizer(model: nn.Module, train_cfg, batch_size: int) -> torch.optim.Optimizer:
    """Weight decay on matrices and prompt tensors, none on biases, norms and scales (<= 1-D or scale)."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim <= 1 or name.endswith(".scale") else decay).append(param)
    groups = [{"params": decay, "weight_decay": train_cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    lr = scaled_lr(train_cfg.base_lr, batch_size)
    if train_cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=train_cfg.momentum)
    return torch.optim.AdamW(groups, lr=lr)


class WarmupCosine:
    """lr(it) = linear warmup to the peak over `warmup` iterations, then cosine down to `min_lr`."""

    def __init__(self, optimizer: torch.optim.Optimizer, total_iters: int, warmup_iters: int, min_lr: float):
        self.optimizer = optimizer
        self.total = max(total_iters, 1)
        self.warmup = min(warmup_iters, self.total)
        self.min_lr = min_lr
        self.peak = [g["lr"] for g in optimizer.param_groups]
        self.iteration = 0
        self._apply()

    def lr_at(self, it: int, peak: float) -> float:
        if it < self.warmup:
            return peak * (it + 1) / self.warmup
        progress = (it - self.warmup) / max(self.total - self.warmup, 1)
        return self.min_lr + (peak - self.min_lr) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    def _apply(self) -> None:
        for group, peak in zip(self.optimizer.param_groups, self.peak):
            group["lr"] = self.lr_at(self.iteration, peak)

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
