"""One run end to end: training (nvpt.engine), then the robustness evaluation (nvpt.robustness).

This module sits downstream of both packages, so data flows one way: config -> data -> model ->
engine -> robustness -> this composition (and the plots); neither package imports it. The run
folder gets, last, `results.json` and `results.md` (clean and corrupted test accuracy of the best
checkpoint, deployed), which mark the run complete.

    result = run_training(load_config("configs/dtd.yaml"))   # what tools/train.py runs
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from nvpt.config import Config
from nvpt.engine.checkpoint import atomic_write_text
from nvpt.engine.distributed import cleanup, init_distributed
from nvpt.engine.run import train
from nvpt.models.binary_prompts import prompt_bits
from nvpt.robustness.evaluate import evaluate_robustness, robustness_sets
from nvpt.robustness.report import markdown_table, write_json


@dataclass
class RunResult:
    run_dir: Path
    summary: dict
    history: list[dict]


def run_training(cfg: Config, config_path: str | Path | None = None, log: Callable[[str], None] = print,
                 show_progress: bool = True) -> RunResult:
    """Train per cfg, evaluate the best checkpoint clean and under noise, write the run folder."""
    robustness_sets(cfg.eval)  # a bad corruption name fails now, not after training
    dist = init_distributed("cuda" if cfg.train.device != "cpu" and torch.cuda.is_available() else "cpu")
    try:
        trained = train(cfg, dist, config_path, log, show_progress)
        start = time.time()
        summary = evaluate_robustness(trained.model, trained.eval_loader, trained.normalize, trained.device, cfg.eval,
                                      trained.img_size, amp=trained.use_amp, amp_dtype=trained.amp_dtype,
                                      show_progress=show_progress)
        summary.update(method=cfg.prompt.method, seed=cfg.seed, split=cfg.eval.split, best_epoch=trained.best["epoch"],
                       best_val_acc=trained.best["acc"] if trained.images["val"] else None,
                       prompt_bits=prompt_bits(cfg, trained.model.prompt_tokens().shape),
                       trainable_params=trained.trainable_params,
                       eval_time_s=round(time.time() - start, 2), images=trained.images,
                       sfl_backend=trained.sfl_backend, device=trained.device_name)
        if dist.is_main:
            atomic_write_text(trained.run_dir / "results.md", markdown_table(summary) + "\n")
            write_json(summary, trained.run_dir / "results.json")  # last: marks the run complete
        trained.say(markdown_table(summary))
        return RunResult(trained.run_dir, summary, trained.history)
    finally:
        cleanup()
