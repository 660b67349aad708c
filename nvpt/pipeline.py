"""One run end to end: training (nvpt.engine), then the robustness evaluation (nvpt.robustness).

This module sits downstream of both packages, so data flows one way: config -> data -> model ->
engine -> robustness -> this composition (and the plots); neither package imports it. The run
folder gets, last, `results.json` and `results.md` (clean and corrupted test accuracy of the best
checkpoint, deployed), which mark the run complete.

    result = run_training(load_config("configs/dtd.yaml"))   # what tools/train.py runs

`make paper` splits the two: `train_only` for each run, then `evaluate_trained` once per task, which
scores every finished run of the task in one pass over its test set (corrupt once, score many) and
writes the same results.json each run's own evaluation would.
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
from nvpt.robustness.runs import evaluate_runs, run_entry


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
        summary = finish_summary(summary, cfg, trained.best, trained.images, trained.model, time.time() - start,
                                 trainable_params=trained.trainable_params, sfl_backend=trained.sfl_backend,
                                 device=trained.device_name)
        if dist.is_main:
            write_results(trained.run_dir, summary)
        trained.say(markdown_table(summary))
        return RunResult(trained.run_dir, summary, trained.history)
    finally:
        cleanup()


def finish_summary(summary: dict, cfg: Config, best: dict, images: dict, model, eval_s: float, **extra) -> dict:
    """What results.json holds besides the accuracies."""
    summary.update(method=cfg.prompt.method, seed=cfg.seed, split=cfg.eval.split, best_epoch=best["epoch"],
                   best_val_acc=best["acc"] if images["val"] else None,
                   prompt_bits=prompt_bits(cfg, model.prompt_tokens().shape), eval_time_s=round(eval_s, 2),
                   images=images, **extra)
    return summary


def write_results(run_dir: Path, summary: dict) -> None:
    atomic_write_text(run_dir / "results.md", markdown_table(summary) + "\n")
    write_json(summary, run_dir / "results.json")  # last: marks the run complete


def train_only(cfg: Config, config_path: str | Path | None = None, log: Callable[[str], None] = print,
               show_progress: bool = True) -> Path:
    """Train per cfg (or resume it with train.resume) and leave the run folder without results.json: its
    evaluation is deferred to `evaluate_trained`. Returns the run folder."""
    robustness_sets(cfg.eval)
    dist = init_distributed("cuda" if cfg.train.device != "cpu" and torch.cuda.is_available() else "cpu")
    try:
        return train(cfg, dist, config_path, log, show_progress).run_dir
    finally:
        cleanup()


def evaluate_trained(run_dirs: list[Path], log: Callable[[str], None] = print, show_progress: bool = False,
                     device: torch.device | None = None) -> list[dict]:
    """Evaluate finished trainings (checkpoint-best) of one task in one pass (nvpt.robustness.runs.evaluate_runs)
    and write each run's results.json / results.md, with the numbers its own final evaluation would give."""
    from nvpt.engine.checkpoint import BEST, read_checkpoint
    from nvpt.engine.distributed import DistInfo
    from nvpt.engine.run import check_backend, resolve_device
    from nvpt.spiking.backend import describe_device

    entries = [run_entry(Path(d) / BEST) for d in run_dirs]
    device = device or resolve_device(entries[0].cfg, DistInfo())
    start = time.time()
    evaluation = evaluate_runs(entries, device, show_progress=show_progress)
    seconds = time.time() - start
    for entry, summary, model in zip(entries, evaluation.summaries, evaluation.models):
        best = read_checkpoint(entry.checkpoint)[1].get("best") or {"acc": None, "epoch": None}
        finish_summary(summary, entry.cfg, best, evaluation.images, model, seconds, eval_shared_by=len(entries),
                       sfl_backend=check_backend(entry.cfg, device), device=describe_device(device))
        write_results(entry.run_dir, summary)
        log(f"{entry.run_dir.name}: clean {summary['clean']:.2f}, mean corrupted "
            f"{summary.get('mean_corrupted') if summary.get('mean_corrupted') is None else round(summary['mean_corrupted'], 2)}")
    return evaluation.summaries
