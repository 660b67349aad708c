"""Accuracy on the clean test set and on every corrupted copy of it.

Shared by tools/train.py (final evaluation) and tools/eval_robustness.py, so both report
the same numbers for the same checkpoint.
"""
from __future__ import annotations

from functools import partial

import torch

from nvpt.engine.loop import evaluate
from nvpt.robustness.corruptions import CORRUPTION_VERSION, corrupt, corruption_grid, resolve_table
from nvpt.robustness.report import set_key, summarize


def robustness_sets(eval_cfg) -> list[tuple[str, int | None, float | None]]:
    """The configured evaluation sets, validated (a bad name or severity fails before any work)."""
    return corruption_grid(eval_cfg.corruptions, eval_cfg.severities, eval_cfg.gaussian_std)


def evaluate_robustness(model, loader, normalize, device: torch.device, eval_cfg, img_size: int,
                        amp: bool = False, amp_dtype=torch.bfloat16, reference: dict | None = None,
                        show_progress: bool = False) -> dict:
    """summarize() of clean + corrupted accuracies; loader items are (images, labels, sample ids)."""
    sets = robustness_sets(eval_cfg)
    table = resolve_table(eval_cfg.corruption_table, img_size)
    clean = evaluate(model, loader, normalize, device, amp=amp, amp_dtype=amp_dtype, show_progress=show_progress,
                     desc="clean")["acc"]
    corrupted = {}
    for name, severity, sigma in sets:
        fn = partial(_corrupt_batch, name=name, severity=severity, sigma=sigma, seed=eval_cfg.seed, table=table)
        key = set_key(name, severity, sigma)
        corrupted[key] = evaluate(model, loader, normalize, device, corrupt=fn, amp=amp, amp_dtype=amp_dtype,
                                  show_progress=show_progress, desc=key)["acc"]
    summary = summarize(clean, corrupted, reference)
    summary["corruption_table"] = table
    summary["noise_seed"] = eval_cfg.seed
    summary["corruption_version"] = CORRUPTION_VERSION  # which noisy images (nvpt/robustness/corruptions.py)
    return summary


def _corrupt_batch(images, ids, *, name, severity, sigma, seed, table):
    return corrupt(images, name, severity, ids, seed, table=table, sigma=sigma)
