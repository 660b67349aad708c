"""The paper's experiment at full scale (the logic behind tools/reproduce_paper.py and `make paper`).

Spike-NVPT against VPT-deep, linear probing and full fine-tuning on DTD and the VTAB-1k natural tasks
that torchvision downloads, ViT-B/16 (ImageNet-21k), 3 seeds each, under the VTAB-1k protocol;
every run is evaluated clean and on the noise sets of configs/base.yaml (4 noise corruptions x 5
severities with the ImageNet-C constants, and 4 Gaussian sigmas). Each task is one
nvpt.comparison in <out>/compare-<task>/, so finished runs are reused and unfinished ones resumed:
stopping and restarting loses at most the epoch in progress. Runs train with their evaluation
deferred; once a task's runs have trained, one pass over its test set scores them all, each batch
corrupted once per set (nvpt.schedule). One worker process per visible GPU pulls runs from the plan
(--workers N to choose; --shard i/n for a SLURM array). Before anything trains, the plan and its
estimated time per part (nvpt.cost) are printed; at the end <out>/results.md holds the cross-task
tables and every task's summary, as docs/results.md does for the demo task.
"""
from __future__ import annotations

import datetime
import functools
from pathlib import Path
from typing import Callable

from nvpt.comparison import Job, check_methods, plan_comparison, run_comparison
from nvpt.cost import Assumptions, describe, image_counts, run_cost, with_figures
from nvpt.engine.checkpoint import atomic_write_text
from nvpt.engine.plan import epochs_done
from nvpt.errors import NVPTError
from nvpt.outputs import check_output_folder
from nvpt.robustness.compare import MEAN, excludes_zero, summary_markdown
from nvpt.robustness.schema import read_comparison
from nvpt.schedule import evaluated, make_units, run_workers, visible_gpus, work

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
TASKS = {"dtd": CONFIGS / "dtd.yaml", **{name: CONFIGS / "natural" / f"{name}.yaml" for name in (
    "cifar100", "caltech101", "oxford_flowers102", "oxford_iiit_pet", "svhn")}}
METHODS = ("spike_nvpt", "vpt_deep", "linear", "full")
REFERENCE = "vpt_deep"
SEEDS = 3
OVERRIDES = ("eval.corruption_table=imagenet",)  # the noise sets' ImageNet-C constants (224 px would pick them too)


def task_config(entry: str) -> Path:
    """A task name (dtd, cifar100, ...) or a config file."""
    if entry in TASKS:
        return TASKS[entry]
    if Path(entry).suffix in (".yaml", ".yml") and Path(entry).is_file():
        return Path(entry)
    raise NVPTError(f"unknown task {entry!r}; use one of {', '.join(TASKS)} or an existing config .yaml")


def plan(tasks: list[str], methods: list[str], seeds: int, overrides: list[str]) -> dict[str, list[Job]]:
    """Every task's runs and what each needs (train, resume or reuse); raises before anything trains."""
    check_methods(list(methods), REFERENCE, seeds, list(overrides))
    plans = {}
    for entry in tasks:
        config = task_config(entry)
        if config.stem in plans:
            raise NVPTError(f"task {config.stem} is listed twice")
        plans[config.stem] = plan_comparison(config, list(overrides), list(methods), seeds)
    return plans


PARTS = ("gpu", "loader", "corruption", "io")


def task_estimate(jobs: list[Job], assume: Assumptions) -> dict[str, float]:
    """Seconds per part still to spend on one task's runs; those still to evaluate share one evaluation pass."""
    parts = dict.fromkeys(PARTS, 0.0)
    share = sum(job.action != "reuse" for job in jobs)
    for job in jobs:
        if job.action != "reuse":
            left = job.cfg.train.epochs - (epochs_done(job.run_dir) if job.action == "resume" else 0)
            cost = run_cost(job.cfg, max(left, 0), assume, evaluate=True, eval_share=share)
            for part in PARTS:
                parts[part] += getattr(cost, f"{part}_s")
    return parts


def estimate_parts(plans: dict[str, list[Job]], assume: Assumptions) -> dict[str, float]:
    """The estimate's seconds per part over the whole plan."""
    per_task = [task_estimate(jobs, assume) for jobs in plans.values()]
    return {part: sum(t[part] for t in per_task) for part in PARTS}


def estimate_markdown(plans: dict[str, list[Job]], assume: Assumptions) -> tuple[str, float]:
    """A table of the runs per task (finished / to resume / to train) with the estimated hours per part (GPU,
    loader, corruption, checkpoint I/O) and in all, and the total seconds."""
    lines = ["| task | images train / test | finished | to resume | to train | GPU | loader | corruption | I/O "
             "| estimated time |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for task, jobs in plans.items():
        parts = task_estimate(jobs, assume)
        train, val, test = image_counts(jobs[0].cfg)
        counts = {a: sum(job.action == a for job in jobs) for a in ("reuse", "resume", "train")}
        cells = " | ".join(f"{parts[p] / 3600:.2f} h" for p in PARTS)
        lines.append(f"| {task} | {train + val:,} / {test:,} | {counts['reuse']} | {counts['resume']} | {counts['train']} "
                     f"| {cells} | {sum(parts.values()) / 3600:.1f} h |")
    parts = estimate_parts(plans, assume)
    total = sum(parts.values())
    runs = sum(len(jobs) for jobs in plans.values())
    cells = " | ".join(f"{parts[p] / 3600:.2f} h" for p in PARTS)
    lines.append(f"| total ({runs} runs) | | | | | {cells} | **{total / 3600:.1f} h** |")
    if total:
        lines.append(f"\nShares of the total: GPU {parts['gpu'] / total:.0%}, loader {parts['loader'] / total:.0%}, "
                     f"corruption {parts['corruption'] / total:.0%}, checkpoint I/O {parts['io'] / total:.0%}.")
    return "\n".join(lines) + "\n", total


def _gain_cell(stat: dict) -> str:
    text = f"{stat['mean']:+.2f}"
    if stat.get("ci95_low") is not None:
        text += f" [{stat['ci95_low']:+.2f}, {stat['ci95_high']:+.2f}]"
    return f"**{text}**" if excludes_zero(stat) else text


def paper_markdown(comps: dict[str, dict], methods: list[str], overrides: list[str]) -> str:
    """results.md: accuracy per task and method, the gains over VPT-deep, and every task's summary table."""
    first = next(iter(comps.values()))
    noisy = [k for k in first["sets"] if k not in ("clean", MEAN)]
    seeds = ", ".join(map(str, first["seeds"]))
    lines = [
        "# Spike-NVPT on the VTAB-1k natural tasks (ViT-B/16, ImageNet-21k)", "",
        f"Written by `python tools/reproduce_paper.py` on {datetime.date.today().isoformat()}"
        + (f" with {' '.join(overrides)}" if overrides else "") + ". "
        f"Each task trains on 1,000 images (VTAB-1k protocol, docs/datasets.md) and tests on its official test "
        f"split; seeds {seeds}; evaluated clean and on {len(noisy)} noisy sets. mCA = mean accuracy over the noisy "
        "sets. Per-task tables with every set and curves: `compare-<task>/comparison.md` next to this file.", "",
        "## Top-1 accuracy (%), mean over seeds: clean / mCA", "",
        "| task | " + " | ".join(methods) + " |", "|---" + "|---:" * len(methods) + "|"]
    means = {m: {"clean": [], MEAN: []} for m in methods}
    for task, comp in comps.items():
        cells = []
        for m in methods:
            acc = comp["accuracy"].get(m)
            if acc is None:  # a comparison written with other --methods
                cells.append("n/a")
                continue
            cells.append(f"{acc['clean']['mean']:.2f} / " + (f"{acc[MEAN]['mean']:.2f}" if MEAN in acc else "n/a"))
            means[m]["clean"].append(acc["clean"]["mean"])
            if MEAN in acc:
                means[m][MEAN].append(acc[MEAN]["mean"])
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    if len(comps) > 1:
        cells = []
        for m in methods:
            clean, mca = means[m]["clean"], means[m][MEAN]
            if len(clean) != len(comps):
                cells.append("n/a")
                continue
            cells.append(f"{sum(clean) / len(clean):.2f} / " + (f"{sum(mca) / len(mca):.2f}" if len(mca) == len(clean) else "n/a"))
        lines.append("| mean over tasks | " + " | ".join(cells) + " |")
    others = [m for m in methods if m != REFERENCE]
    lines += ["", f"## Gain over {REFERENCE} (points), paired by seed: mean [95% CI], **bold** where the CI excludes 0",
              "", "| task | " + " | ".join(f"{m}: clean | {m}: mCA" for m in others) + " |",
              "|---" + "|---:" * (2 * len(others)) + "|"]
    for task, comp in comps.items():
        cells = []
        for m in others:
            gains = comp["gain"].get(m) if comp["reference"] == REFERENCE else None
            if gains is None:
                cells += ["n/a", "n/a"]
                continue
            cells += [_gain_cell(gains["clean"]), _gain_cell(gains[MEAN]) if MEAN in gains else "n/a"]
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    lines += ["", "## Per task", ""]
    for task, comp in comps.items():
        lines += [f"### {task} ([every set](compare-{task}/comparison.md))", "", summary_markdown(comp)]
    return "\n".join(lines)


def collect(out: Path, tasks: list[str]) -> dict[str, dict]:
    """The comparisons already written under `out`, in task order (tasks without one are left out)."""
    comps = {}
    for stem in (task_config(entry).stem for entry in tasks):
        path = out / f"compare-{stem}" / "comparison.json"
        if path.is_file():
            comps[stem] = read_comparison(path, "delete it and rerun")
    return comps


def units(tasks: list[str], methods: list[str], seeds: int, overrides: list[str], shard: tuple[int, int] | None):
    """The plan's units (nvpt.schedule.make_units), planned afresh: what each worker process calls."""
    return make_units(plan(tasks, methods, seeds, overrides), shard)


def reproduce(tasks: list[str], methods: list[str], seeds: int, overrides: list[str], out: Path,
              assume: Assumptions | None = None, estimate_only: bool = False, tables_only: bool = False,
              log: Callable[[str], None] = print, workers: int | None = None, shard: tuple[int, int] | None = None,
              break_locks: bool = False) -> Path | None:
    """Print the plan and its estimate, train and evaluate every run not finished yet (workers processes, default
    one per visible GPU; only the shard's runs with shard=(i, n)), write each finished task's comparison and
    <out>/results.md."""
    out = Path(out)
    user = [o for o in overrides if not o.startswith("output_dir=")]
    overrides = list(OVERRIDES) + user + [f"output_dir={out}"]
    if not estimate_only:
        check_output_folder(out, ("results.md",))  # before any training
    if workers is not None and workers < 1:
        raise NVPTError(f"--workers must be >= 1, got {workers}")
    if not tables_only:
        assume = assume if assume is not None else with_figures()
        plans = plan(tasks, methods, seeds, overrides)
        table, total = estimate_markdown(plans, assume)
        log(f"The paper's experiment: {', '.join(methods)} on {', '.join(plans)}, seeds 0..{seeds - 1}, runs in {out}"
            + (f", shard {shard[0]}/{shard[1]}" if shard else ""))
        log(table.rstrip("\n"))
        workers = workers or max(len(visible_gpus()), 1)
        log(f"Estimated time still to spend: {total / 3600:.1f} h on one GPU"
            + (f", about {total / 3600 / workers:.1f} h with {workers} workers" if workers > 1 else "")
            + ". From these figures:\n" + describe(assume))
        if estimate_only:
            return None
        if break_locks:
            from nvpt.engine.claims import break_claims

            log(f"--break-locks: removed {break_claims([job.run_dir for jobs in plans.values() for job in jobs])} claims")
        devices = visible_gpus()
        count = workers
        build = functools.partial(units, list(tasks), list(methods), seeds, overrides, shard)
        if count == 1:
            work(build(), log, out)
        else:
            run_workers(build, count, devices, log, out)
        for config in map(task_config, tasks):
            jobs = plans[config.stem]
            finished = sum(evaluated(job) for job in jobs)
            if finished < len(jobs):
                log(f"== {config.stem}: {finished} of {len(jobs)} runs finished (other shards still running?): "
                    "its comparison is written once all are")
                continue
            log(f"== {config.stem}")
            run_comparison(config, overrides, list(methods), seeds, REFERENCE, True, out / f"compare-{config.stem}", log)
    comps = collect(out, tasks)
    if not comps:
        raise NVPTError(f"no finished comparison under {out}; run without --tables-only first")
    target = out / "results.md"
    atomic_write_text(target, paper_markdown(comps, list(methods), user))
    log(f"wrote {target} ({len(comps)} of {len(tasks)} tasks)")
    return target
