"""The paper-scale benchmark with the VPT reference's selection (tools/reproduce_paper.py --benchmark).

For every task of the benchmark (nvpt.suites: VTAB-1k's 19, the 5 FGVC data sets, or both) and every method:

1. grid: one run per (base_lr, weight_decay) point of nvpt.suites.grid, seed 0, trained on train800
   (FGVC: train.json) with data.protocol=tune and evaluated on val200 (FGVC: val.json) only
   (eval.split=val, no corrupted sets: the test split stays untouched). Runs: <out>/grid/<task>-<method>-lr<lr>-wd<wd>.
2. choice: the point with the highest validation top-1 (results.json best_val_acc; nvpt.suites.choose),
   written with every point's score to <out>/<task>/selection.json and as a config
   <out>/<task>/<method>.yaml (the task's config with the chosen base_lr and weight_decay).
3. final: that config with --seeds seeds on train800val200 (FGVC: train.json), data.protocol=final,
   tested once, clean and under the corruptions of the config, compared with nvpt.comparison
   (<out>/compare-<task>/, runs <out>/<task>-<method>-s<seed>).

Every run is planned first (train, resume or reuse: nvpt.engine.plan), so a stopped benchmark restarts
where it stopped. The tables over tasks: nvpt.tables (<out>/benchmark.md, .csv, .png).
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import yaml

from nvpt.comparison import Job, check_methods, plan_comparison, run_comparison, run_job
from nvpt.config import Config, load_config
from nvpt.cost import Assumptions, describe, run_cost
from nvpt.engine.checkpoint import atomic_write_text
from nvpt.engine.plan import epochs_done, plan_run
from nvpt.errors import NVPTError
from nvpt.robustness.report import write_json
from nvpt.suites import CONFIGS, choose, grid, group_of, suite

# the grid's runs: protocol tune, scored on the validation split only, no corrupted sets
GRID_OVERRIDES = ("data.protocol=tune", "eval.split=val", "eval.corruptions=[]", "eval.gaussian_std=[]", "seed=0")
FULL_RECIPE = CONFIGS / "recipes" / "full.yaml"


@dataclass
class TaskPlan:
    task: str
    config: Path
    grid: dict[str, list[Job]]  # method -> one job per grid point
    finals: list[Job]  # method x seed, with the chosen values where the grid is complete
    chosen: dict[str, dict] = field(default_factory=dict)  # method -> selection (when its grid is complete)


def _point_name(lr: float, wd: float) -> str:
    return f"lr{lr:g}-wd{wd:g}"


def _method_overrides(method: str) -> list[str]:
    """What a method's runs set besides the grid values: prompt.method, and full fine-tuning's own recipe
    (configs/recipes/full.yaml, AdamW) other than its learning rate and weight decay, which the grid sets."""
    overrides = [f"prompt.method={method}"]
    if method == "full":
        recipe = yaml.safe_load(FULL_RECIPE.read_text())
        overrides += [f"{section}.{key}={value}" for section, keys in recipe.items() if isinstance(keys, dict)
                      for key, value in keys.items() if f"{section}.{key}" not in ("train.base_lr", "train.weight_decay",
                                                                                  "prompt.method")]
    return overrides


def _copy_with(cfg: Config, **values) -> Config:
    """A copy of a loaded config with some keys set ("train__base_lr" for train.base_lr): the grid's and the seeds'
    configs differ from the task's only there, and one YAML read per task and method keeps planning 2,688 runs quick."""
    out = copy.deepcopy(cfg)
    for name, value in values.items():
        *parents, leaf = name.split("__")
        node = out
        for part in parents:
            node = node[part]
        node[leaf] = value
    return out


def grid_jobs(task: str, config: Path, method: str, points, overrides: list[str], out: Path) -> list[Job]:
    base = load_config(config, [*overrides, *_method_overrides(method), *GRID_OVERRIDES, f"output_dir={out / 'grid'}"])
    jobs = []
    for lr, wd in points:
        cfg = _copy_with(base, train__base_lr=lr, train__weight_decay=wd,
                         run_name=f"{task}-{method}-{_point_name(lr, wd)}")
        run_dir = Path(cfg.output_dir) / cfg.run_name
        jobs.append(Job(method, 0, cfg, run_dir, plan_run(cfg, run_dir, True)))
    return jobs


def grid_scores(jobs: list[Job]) -> list[dict] | None:
    """{base_lr, weight_decay, val, run} per grid point, in grid order; None while a point is unfinished."""
    rows = []
    for job in jobs:
        path = job.run_dir / "results.json"
        if not path.is_file():
            return None
        try:
            result = json.loads(path.read_text())
        except ValueError as exc:
            raise NVPTError(f"cannot read {path}: {exc}; delete the run folder and rerun") from None
        val = result.get("best_val_acc")
        rows.append({"base_lr": job.cfg.train.base_lr, "weight_decay": job.cfg.train.weight_decay,
                     "val": float(val if val is not None else result["clean"]), "run": str(job.run_dir)})
    return rows


def chosen_config(task: str, config: Path, method: str, choice: dict, out: Path) -> Path:
    """<out>/<task>/<method>.yaml: the task's config with the method and its chosen values (a comparison variant)."""
    bases = [str(Path(config).resolve())] + ([str(FULL_RECIPE)] if method == "full" else [])
    text = (f"# {task}, {method}: base_lr and weight_decay chosen on the validation split (selection.json)\n"
            + yaml.safe_dump({"_base_": bases, "prompt": {"method": method},
                              "train": {"base_lr": choice["base_lr"], "weight_decay": choice["weight_decay"]}},
                             sort_keys=False))
    target = out / task / f"{method}.yaml"
    if not target.is_file() or target.read_text() != text:
        atomic_write_text(target, text)
    return target


def plan_task(task: str, config: Path, methods: list[str], seeds: int, overrides: list[str], out: Path,
              lrs=None, wds=None) -> TaskPlan:
    grids = {m: grid_jobs(task, config, m, grid(m, lrs, wds), overrides, out) for m in methods}
    chosen, variants = {}, []
    for m in methods:
        rows = grid_scores(grids[m])
        if rows is not None:
            chosen[m] = {**choose(rows), "grid": rows}
    if len(chosen) == len(methods):  # every grid done: the finals with the chosen values
        variants = [str(chosen_config(task, config, m, chosen[m], out)) for m in methods]
        finals = plan_comparison(config, [*overrides, f"output_dir={out}"], variants, seeds)
    else:  # not chosen yet: the finals as they will run (their cost does not depend on the values)
        finals = []
        for m in methods:
            base = load_config(config, [*overrides, *_method_overrides(m), f"output_dir={out}"])
            for seed in range(seeds):
                cfg = _copy_with(base, seed=seed, run_name=f"{task}-{m}-s{seed}")
                finals.append(Job(m, seed, cfg, Path(cfg.output_dir) / cfg.run_name, "train"))
    return TaskPlan(task, Path(config), grids, finals, chosen)


def plan_benchmark(benchmark: str, methods: list[str], seeds: int, overrides: list[str], out: Path,
                   reference: str, lrs=None, wds=None, tasks: list[str] | None = None) -> list[TaskPlan]:
    """Every task's grid and final runs and what each needs; raises before anything trains."""
    check_methods(list(methods), reference, seeds, list(overrides))
    entries = suite(benchmark)
    if tasks:
        known = dict(entries)
        unknown = [t for t in tasks if t not in known]
        if unknown:
            raise NVPTError(f"unknown task {unknown[0]!r} for --benchmark {benchmark}; use some of {', '.join(known)}")
        entries = [(t, known[t]) for t in tasks]
    for m in methods:
        grid(m, lrs, wds)  # a bad grid fails now
    return [plan_task(task, config, list(methods), seeds, list(overrides), out, lrs, wds) for task, config in entries]


def _seconds(jobs: list[Job], assume: Assumptions) -> float:
    total = 0.0
    for job in jobs:
        if job.action != "reuse":
            left = job.cfg.train.epochs - (epochs_done(job.run_dir) if job.action == "resume" else 0)
            total += run_cost(job.cfg, max(left, 0), assume).seconds
    return total


def plan_markdown(plans: list[TaskPlan], methods: list[str], lrs, wds, assume: Assumptions) -> tuple[str, float]:
    """The grid, then per task: its group, grid runs and final runs (finished / to run) and the estimated GPU time."""
    lines = ["Grid searched per task and method (trained on train800, chosen on val200; FGVC: train.json / val.json):"]
    for m in methods:
        points = grid(m, lrs, wds)
        lrs_m = sorted({lr for lr, _ in points}, reverse=True)
        wds_m = sorted({wd for _, wd in points}, reverse=True)
        lines.append(f"  {m}: base_lr {{{', '.join(f'{v:g}' for v in lrs_m)}}} x weight_decay "
                     f"{{{', '.join(f'{v:g}' for v in wds_m)}}} = {len(points)} runs")
    lines += ["", "| task | group | grid runs done / all | chosen | final runs done / all | estimated GPU time |",
              "|---|---|---:|---|---:|---:|"]
    total = 0.0
    for p in plans:
        grid_all = [j for jobs in p.grid.values() for j in jobs]
        seconds = _seconds(grid_all, assume) + _seconds(p.finals, assume)
        chosen = ", ".join(f"{m} {_point_name(c['base_lr'], c['weight_decay'])}" for m, c in p.chosen.items()) or "—"
        lines.append(f"| {p.task} | {group_of(p.task) or '—'} | {sum(j.action == 'reuse' for j in grid_all)} / "
                     f"{len(grid_all)} | {chosen} | {sum(j.action == 'reuse' for j in p.finals)} / {len(p.finals)} "
                     f"| {seconds / 3600:.1f} h |")
        total += seconds
    runs = sum(len(j) for p in plans for j in p.grid.values()) + sum(len(p.finals) for p in plans)
    lines.append(f"| total ({runs} runs) | | | | | **{total / 3600:.1f} h** |")
    return "\n".join(lines) + "\n", total


def run_grid(jobs: list[Job], config: Path, log: Callable[[str], None]) -> None:
    for i, job in enumerate(jobs, 1):
        if job.action != "reuse":
            point = _point_name(job.cfg.train.base_lr, job.cfg.train.weight_decay)
            run_job(job, f"[grid {i}/{len(jobs)}] {job.method} {point}", config, log)


def run_task(task: str, config: Path, methods: list[str], seeds: int, overrides: list[str], out: Path,
             reference: str, lrs=None, wds=None, log: Callable[[str], None] = print) -> dict:
    """Grid, choice and final runs of one task; returns its comparison (with "selection" added)."""
    first = plan_task(task, config, methods, seeds, overrides, out, lrs, wds)
    for m in methods:
        run_grid(first.grid[m], config, log)
    done = plan_task(task, config, methods, seeds, overrides, out, lrs, wds)  # every grid finished: the choices
    selection = done.chosen
    atomic_write_text(out / task / "selection.json", json.dumps(selection, indent=1) + "\n")
    for m, c in selection.items():
        log(f"{task} {m}: chose base_lr {c['base_lr']:g}, weight_decay {c['weight_decay']:g} "
            f"(val top-1 {c['val']:.2f} %)")
    variants = [str(out / task / f"{m}.yaml") for m in methods]
    comp = run_comparison(config, [*overrides, f"output_dir={out}"], variants, seeds, reference, True,
                          out / f"compare-{task}", log)
    saved = out / f"compare-{task}" / "comparison.json"  # the chosen values go into the task's results too
    write_json({**json.loads(saved.read_text()), "selection": selection}, saved)
    return {**comp, "selection": selection}


def collect(out: Path, tasks: list[str]) -> tuple[dict[str, dict], dict[str, dict]]:
    """(comparisons, selections) already written under `out`, in task order; tasks without both are left out."""
    comps, selections = {}, {}
    for task in tasks:
        paths = out / f"compare-{task}" / "comparison.json", out / task / "selection.json"
        if all(p.is_file() for p in paths):
            try:
                comps[task], selections[task] = (json.loads(p.read_text()) for p in paths)
            except ValueError as exc:
                raise NVPTError(f"cannot read a result of {task} under {out}: {exc}; delete it and rerun") from None
    return comps, selections


def reproduce_benchmark(benchmark: str, methods: list[str], seeds: int, overrides: list[str], out: Path,
                        reference: str = "vpt_deep", assume: Assumptions = Assumptions(), estimate_only: bool = False,
                        tables_only: bool = False, lrs=None, wds=None, tasks: list[str] | None = None,
                        log: Callable[[str], None] = print) -> Path | None:
    """Print the plan (with the grid) and its estimate, run every task's grid, choice and finals, write the tables."""
    from nvpt.tables import write_tables

    out = Path(out)
    user = [o for o in overrides if not o.startswith("output_dir=")]
    names = tasks or [t for t, _ in suite(benchmark)]
    if not tables_only:
        plans = plan_benchmark(benchmark, methods, seeds, user, out, reference, lrs, wds, tasks)
        table, total = plan_markdown(plans, methods, lrs, wds, assume)
        log(f"The {benchmark} benchmark: {', '.join(methods)} on {len(plans)} tasks; per task and method a grid on "
            f"the validation split, then seeds 0..{seeds - 1} with the chosen values; runs in {out}")
        log(table.rstrip("\n"))
        log(f"Estimated time still to spend: {total / 3600:.1f} h on one GPU. From these figures:\n" + describe(assume))
        if estimate_only:
            return None
        for p in plans:
            log(f"== {p.task}")
            run_task(p.task, p.config, list(methods), seeds, user, out, reference, lrs, wds, log)
    comps, selections = collect(out, names)
    if not comps:
        raise NVPTError(f"no finished task under {out}; run without --tables-only first")
    written = write_tables(comps, selections, list(methods), reference, out / "benchmark", user)
    log(f"wrote {', '.join(str(p) for p in written)} ({len(comps)} of {len(names)} tasks)")
    return written[0]
