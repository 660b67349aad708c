"""Accuracy on the clean test set and on every corrupted copy of it, for one model or several.

Shared by tools/train.py (final evaluation), tools/eval_robustness.py and `make paper`, so all
report the same numbers for the same checkpoint. The loop runs over the test batches once: each
batch is loaded once, corrupted once per evaluation set, and every model scores the same
corrupted batch (corrupt once, score many). A model's numbers do not depend on the other models
scored with it: its forward passes see the same images in the same batches, its counts are
exact integers, so evaluating runs together or one by one gives bit-identical accuracies.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from nvpt.data.cache import unit_float
from nvpt.engine.distributed import all_reduce_sum
from nvpt.engine.loop import autocast_for, progress
from nvpt.robustness.corruptions import CORRUPTION_VERSION, corrupt, corruption_grid, resolve_table
from nvpt.robustness.report import set_key, summarize


@dataclass
class Scorer:
    """One model to score: its own normalisation and mixed precision (as its training evaluated it)."""

    model: torch.nn.Module
    normalize: torch.nn.Module
    amp: bool = False
    amp_dtype: torch.dtype = torch.bfloat16


def robustness_sets(eval_cfg) -> list[tuple[str, int | None, float | None]]:
    """The configured evaluation sets, validated (a bad name or severity fails before any work)."""
    return corruption_grid(eval_cfg.corruptions, eval_cfg.severities, eval_cfg.gaussian_std)


@torch.no_grad()
def count_correct(scorers: list[Scorer], loader, device: torch.device, sets, seed: int, table: str,
                  show_progress: bool = False, corrupt_fn: Callable = corrupt) -> tuple[torch.Tensor, int]:
    """(correct [scorers, 1 + sets] int64 on `device`, images seen): the per-batch loop of score_sets, with no host
    read. Each batch is moved to the device once and corrupted once per set; every scorer classifies it."""
    for s in scorers:
        s.model.eval()
    correct = torch.zeros(len(scorers), 1 + len(sets), dtype=torch.int64, device=device)
    seen = 0
    for images, labels, ids in progress(loader, show_progress, desc=f"{1 + len(sets)} sets x {len(scorers)} model(s)"):
        images = unit_float(images.to(device, non_blocking=True))  # a decoded-once set's uint8 -> ToTensor's floats
        labels = labels.to(device, non_blocking=True)
        for k, spec in enumerate([None] + list(sets)):
            batch = images if spec is None else corrupt_fn(images, spec[0], spec[1], ids, seed, table=table,
                                                           sigma=spec[2])
            for i, s in enumerate(scorers):
                with autocast_for(device, s.amp, s.amp_dtype):
                    logits = s.model(s.normalize(batch)).float()
                correct[i, k] += (logits.argmax(1) == labels).sum()
        seen += labels.shape[0]
    return correct, seen


def score_sets(scorers: list[Scorer], loader, device: torch.device, sets, seed: int, table: str,
               show_progress: bool = False, corrupt_fn: Callable = corrupt) -> list[dict[str, float]]:
    """Top-1 accuracy (%) of every scorer on the clean set (key 'clean') and every (name, severity, sigma) set.

    Loader items: (images [B,C,H,W] in [0,1], labels, sample ids). The counts stay on the device during the pass
    (count_correct) and are read once at its end, summed over DDP ranks, so every rank returns the global
    accuracies."""
    keys = ["clean"] + [set_key(*s) for s in sets]
    correct, seen = count_correct(scorers, loader, device, sets, seed, table, show_progress, corrupt_fn)
    totals = all_reduce_sum([float(c) for c in correct.flatten().tolist()] + [float(seen)], device)  # one host read
    seen = totals[-1]
    return [{key: 100.0 * totals[i * len(keys) + k] / max(seen, 1) for k, key in enumerate(keys)}
            for i in range(len(scorers))]


def evaluate_many(scorers: list[Scorer], loader, device: torch.device, eval_cfg, img_size: int,
                  reference: dict | int | None = None, show_progress: bool = False) -> list[dict]:
    """summarize() of clean + corrupted accuracies for every scorer, from one pass over the test batches.
    reference: a summary every scorer is diffed against, or the index of the scorer that is the reference of the
    others (scored in the same pass; its own summary has no reference)."""
    sets = robustness_sets(eval_cfg)
    table = resolve_table(eval_cfg.corruption_table, img_size)
    accs = score_sets(scorers, loader, device, sets, eval_cfg.seed, table, show_progress)

    def summary_of(acc, ref):
        summary = summarize(acc["clean"], {k: v for k, v in acc.items() if k != "clean"}, ref)
        summary["corruption_table"] = table
        summary["noise_seed"] = eval_cfg.seed
        summary["corruption_version"] = CORRUPTION_VERSION  # which noisy images (nvpt/robustness/corruptions.py)
        return summary

    ref = summary_of(accs[reference], None) if isinstance(reference, int) else reference
    return [ref if isinstance(reference, int) and i == reference else summary_of(acc, ref)
            for i, acc in enumerate(accs)]


def evaluate_robustness(model, loader, normalize, device: torch.device, eval_cfg, img_size: int,
                        amp: bool = False, amp_dtype=torch.bfloat16, reference: dict | None = None,
                        show_progress: bool = False) -> dict:
    """summarize() of clean + corrupted accuracies of one model; loader items are (images, labels, sample ids)."""
    return evaluate_many([Scorer(model, normalize, amp, amp_dtype)], loader, device, eval_cfg, img_size,
                         reference, show_progress)[0]
