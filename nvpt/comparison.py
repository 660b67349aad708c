"""Train (or collect) several methods over several seeds and compare them with confidence intervals
(the logic behind tools/compare.py; tools/reproduce_paper.py runs it once per task).

Run i of method m is <output_dir>/<config stem>-<m>-s<i>, trained with prompt.method=<m>, seed=<i>.
A method's own recipe, when the config folder holds <config stem>_<m>.yaml (e.g. dtd_full.yaml),
is read from that file instead. A method entry may also be a YAML file (a variant, e.g. an
study variant in configs/study/): it is labelled by its file name and trained as it says.
With reuse (the default) a run folder that already holds results.json for the same config is
collected instead of retrained, and an unfinished one is resumed (nvpt.engine.plan); a finished
run evaluated with an older corruption code version (other noisy images) is refused unless
tools/eval_robustness.py has re-evaluated it (read_run_results). Writes
comparison.md, comparison.json and comparison.png/.pdf to `out`.

    jobs = plan_comparison("configs/dtd.yaml", [], ["spike_nvpt", "vpt_deep"], seeds=3)
    comp = run_comparison("configs/dtd.yaml", [], ["spike_nvpt", "vpt_deep"], seeds=3)
"""
from __future__ import annotations

import json
import os
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from nvpt.config import METHODS, Config, check_pretrained_file, load_config
from nvpt.engine.checkpoint import BEST, atomic_write_text
from nvpt.engine.plan import plan_run
from nvpt.errors import NVPTError
from nvpt.outputs import check_output_folder
from nvpt.robustness.compare import (MEAN, compare_runs, comparison_markdown, family_markdown, parameters_markdown,
                                     plot_accuracy_robustness, plot_comparison, summary_markdown)
from nvpt.robustness.corruptions import CORRUPTION_VERSION, RERUN_HINT, corruption_version
from nvpt.robustness.evaluate import robustness_sets
from nvpt.robustness.report import write_json
from nvpt.robustness.schema import read_summary

# set per run by the comparison
OWN_KEYS = ("prompt.method", "seed", "run_name")
OUT_FILES = ("comparison.json", "comparison.md", "comparison.png", "comparison.pdf", "comparison_corruptions.png",
             "comparison_corruptions.pdf")
# each method's recipe, recorded in comparison.json (the fronts read a setting's learning rate and length from it)
RECIPE_KEYS = ("prompt.method", "prompt.length", "train.base_lr", "train.epochs")


@dataclass
class Job:
    method: str  # label: a method name or a variant file's stem
    seed: int
    cfg: Config
    run_dir: Path
    action: str  # train | reuse | resume (nvpt.engine.plan.plan_run)


def is_variant(entry: str) -> bool:
    return entry.endswith((".yaml", ".yml"))


def check_methods(methods: list[str], reference: str, seeds: int, overrides: list[str]) -> None:
    """Everything that can be wrong with the methods, seeds and overrides, before any training."""
    unknown = [m for m in methods if m not in METHODS and not is_variant(m)]
    if unknown:
        hint = "; put key=value overrides right after CONFIG" if any("=" in m for m in unknown) else ""
        raise NVPTError(f"unknown method {unknown[0]!r} in --methods; valid: {', '.join(METHODS)} or an existing "
                        f"config .yaml{hint}")
    if len(set(methods)) != len(methods):
        raise NVPTError(f"--methods lists a method twice: {' '.join(methods)}")
    labels = [Path(m).stem if is_variant(m) else m for m in methods]
    if reference not in labels:
        raise NVPTError(f"--reference {reference} must be one of --methods ({' '.join(methods)})")
    if seeds < 1:
        raise NVPTError(f"--seeds must be >= 1, got {seeds}")
    own = [o for o in overrides if o.split("=", 1)[0].strip() in OWN_KEYS]
    if own:
        raise NVPTError(f"override {own[0]!r} is not allowed: compare.py sets {', '.join(OWN_KEYS)} for each run")


def method_config(config: str | Path, entry: str) -> tuple[str, Path, list[str]]:
    """A method entry -> (label, config file, overrides it implies)."""
    if is_variant(entry):
        if not Path(entry).is_file():
            raise NVPTError(f"--methods {entry}: config file not found")
        return Path(entry).stem, Path(entry), []
    base = Path(config)
    own = base.with_name(f"{base.stem}_{entry}{base.suffix}")  # e.g. configs/dtd_full.yaml
    return entry, (own if own.is_file() else base), [f"prompt.method={entry}"]


def plan_comparison(config: str | Path, overrides: list[str], methods: list[str], seeds: int,
                    reuse: bool = True) -> list[Job]:
    """Every method x seed run with its config and what its folder calls for; raises before any training."""
    base = load_config(config, overrides)
    robustness_sets(base.eval)  # a bad corruption name fails before any training
    stem = Path(config).stem
    jobs = []
    for entry in methods:
        method, path, implied = method_config(config, entry)
        for seed in range(seeds):
            cfg = load_config(path, list(overrides) + implied + [f"seed={seed}", f"run_name={stem}-{method}-s{seed}"])
            check_pretrained_file(cfg)
            run_dir = Path(cfg.output_dir) / cfg.run_name
            jobs.append(Job(method, seed, cfg, run_dir, plan_run(cfg, run_dir, reuse)))
    for job in jobs:
        if job.action == "reuse":
            read_run_results(job.run_dir)  # an outdated one fails now, before any training
    labels = list(dict.fromkeys(job.method for job in jobs))
    if len(labels) != len(methods):
        raise NVPTError(f"--methods gives two entries the same label: {' '.join(methods)}")
    return jobs


def read_run_results(run_dir: Path) -> dict:
    """A finished run's results.json, checked; a damaged one names the file and how to redo it.
    When it was evaluated with an older corruption code version (CORRUPTION_VERSION: other noisy
    images), its corrupted accuracies come from the robustness/robustness.json that
    `tools/eval_robustness.py RUN` wrote with the current version (checkpoint-best, the same sets
    and noise seed); without one it is an error."""
    path = run_dir / "results.json"
    results = read_summary(path, f"delete {path} and rerun: the run resumes from its checkpoint and is evaluated again")
    version = corruption_version(results)
    if version == CORRUPTION_VERSION or not results.get("sets"):
        return results
    redo = run_dir / "robustness" / "robustness.json"
    if redo.is_file():
        again = read_summary(redo, f"rerun tools/eval_robustness.py {run_dir}")
        if (corruption_version(again) == CORRUPTION_VERSION and Path(str(again.get("checkpoint", ""))).name == BEST
                and set(again.get("sets", {})) == set(results["sets"]) and again.get("noise_seed") == results.get("noise_seed")):
            return {**results, **{k: v for k, v in again.items() if k != "reference"}}
    raise NVPTError(f"run {run_dir} was evaluated with corruption code version {version} (this code makes version "
                    f"{CORRUPTION_VERSION}: other noisy images); {RERUN_HINT.replace('their', 'its').replace('RUN', str(run_dir))}, "
                    f"or retrain it into another output_dir")


def run_job(job: Job, head: str, config: str | Path, log: Callable[[str], None]) -> None:
    """Train a planned run, or resume it (job.action train / resume), logging under `head`."""
    from nvpt.pipeline import run_training  # timm and the engine: only once a plan holds

    log(f"{head} {'resuming' if job.action == 'resume' else 'training'} {job.run_dir}")
    if job.action == "resume":
        job.cfg.train["resume"] = str(job.run_dir)
    start = time.time()
    run_training(job.cfg, config_path=config, log=lambda msg: log(textwrap.indent(msg, "    ")))
    log(f"{head} done in {time.time() - start:.0f} s")


def run_jobs(jobs: list[Job], config: str | Path, log: Callable[[str], None]) -> None:
    """Train or resume each planned run in order; a finished one is only named."""
    for i, job in enumerate(jobs, 1):
        head = f"[{i}/{len(jobs)}] {job.method} seed {job.seed} ..."
        if job.action == "reuse":
            log(f"{head} reused {job.run_dir}")
        else:
            run_job(job, head, config, log)


def run_comparison(config: str | Path, overrides: list[str], methods: list[str], seeds: int,
                   reference: str = "vpt_deep", reuse: bool = True, out: str | Path | None = None,
                   log: Callable[[str], None] = print) -> dict:
    """Train, resume or collect every run, then write and return the comparison (compare_runs' dict)."""
    check_methods(methods, reference, seeds, overrides)
    jobs = plan_comparison(config, overrides, methods, seeds, reuse)
    base = load_config(config, overrides)
    out = check_output_folder(out or Path(base.output_dir) / f"compare-{Path(config).stem}", OUT_FILES)
    for job in jobs:  # a finished run's results.json is checked before any training
        if job.action == "reuse":
            read_run_results(job.run_dir)
    run_jobs(jobs, config, log)
    labels = list(dict.fromkeys(job.method for job in jobs))
    results = {m: [read_run_results(job.run_dir) for job in jobs if job.method == m] for m in labels}

    comp = compare_runs(results, reference=reference)
    # what each method trains (results.json's trainable_params; the same for every seed), None for older runs
    params = {m: results[m][0].get("trainable_params") for m in labels}
    table = summary_markdown(comp) + "\n" + family_markdown(comp) + "\n" + comparison_markdown(comp)
    if any(n is not None for n in params.values()):
        table += "\n" + parameters_markdown(comp, params)
    first = {m: next(job.cfg for job in jobs if job.method == m) for m in labels}
    write_json({**comp, "config": str(config), "overrides": list(overrides), "trainable_params": params,
                "runs": {m: [str(job.run_dir) for job in jobs if job.method == m] for m in labels},
                "recipe": {m: {k: first[m].get_path(k) for k in RECIPE_KEYS} for m in labels}},
               out / "comparison.json")
    atomic_write_text(out / "comparison.md", f"# {Path(config).stem}: {' vs '.join(labels)}\n\n{table}")
    plots = plot_comparison(comp, out / "comparison")
    if MEAN in comp["sets"]:  # clean accuracy against mCA, every method, labelled with its trainable parameters
        plots += plot_accuracy_robustness(comp, out / "accuracy_robustness", params)
    log(table.rstrip("\n"))
    log(f"wrote {out / 'comparison.md'}, comparison.json, {', '.join(p.name for p in plots)}")
    return comp


# ----------------------------------------------------------------------------- sweeps

SWEPT_KEYS = ("train.base_lr", "prompt.length")


def sweep_point_dir(out: str | Path, method: str, lr: str, length: int) -> Path:
    """<out>/<method>/lr<lr>-p<length>: one point of a sweep (comparison.json, plots, log; its runs in runs/)."""
    return Path(out) / method / f"lr{lr}-p{length}"


def run_sweep(config: str | Path, overrides: list[str], methods: list[str], lrs: list[str], lengths: list[int],
              seeds: int, out: str | Path, reuse: bool = True, log: Callable[[str], None] = print) -> list[Path]:
    """Every method x learning rate x prompt length, `seeds` seeds each, through run_comparison (one method per point,
    its own reference) into sweep_point_dir(...). A point whose comparison.json already holds these seeds is skipped;
    otherwise finished runs are collected and unfinished ones resumed, so the sweep can be stopped and restarted.
    Every point is planned (configs, weights files, run folders) before the first one trains. Returns the
    comparison.json paths."""
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise NVPTError(f"unknown method {bad[0]!r}; a sweep takes method names: {', '.join(METHODS)}")
    swept = [o for o in overrides if o.split("=", 1)[0].strip() in SWEPT_KEYS]
    if swept:
        raise NVPTError(f"override {swept[0]!r} is not allowed: the sweep sets {', '.join(SWEPT_KEYS)} per point")
    for lr in lrs:
        try:
            if float(lr) <= 0:
                raise ValueError
        except ValueError:
            raise NVPTError(f"learning rate {lr!r} must be a positive number") from None
    if not lrs or not lengths or any(int(n) < 1 for n in lengths):
        raise NVPTError("a sweep needs at least one learning rate and prompt lengths >= 1")
    points = []
    for method in methods:
        for length in lengths:
            for lr in lrs:
                folder = sweep_point_dir(out, method, lr, length)
                point = list(overrides) + [f"train.base_lr={lr}", f"prompt.length={length}", f"output_dir={folder / 'runs'}"]
                check_methods([method], method, seeds, point)
                plan_comparison(config, point, [method], seeds, reuse)  # raises before anything trains
                points.append((method, folder, point))
    files = []
    for i, (method, folder, point) in enumerate(points, 1):
        done = folder / "comparison.json"
        if reuse and done.is_file() and json.loads(done.read_text()).get("seeds") == list(range(seeds)):
            log(f"[point {i}/{len(points)}] {folder}: done")
        else:
            log(f"[point {i}/{len(points)}] {folder}")
            run_comparison(config, point, [method], seeds, method, reuse, folder, log=log)
        files.append(done)
    return files


def run_final(config: str | Path, overrides: list[str], settings: list[dict], target: float, lengths: list[int],
              lrs: list[str], seeds: int, out: str | Path, methods: tuple[str, ...] = ("vpt_deep", "spike_nvpt"),
              reuse: bool = True, log: Callable[[str], None] = print) -> str | None:
    """The pre-registered final of the fronts (docs/protocol.md): per prompt length, each method at the sweep setting
    picked by nvpt.robustness.fronts.pick_setting, written as a variant config <out>/p<length>/<method>.yaml (the
    record of the choice), then run_comparison of the variants (reference: the first method) into <out>/p<length>.
    The sweep must hold every method x length x lr in `lrs`. Every length is planned before the first run trains.
    Returns final_markdown(...). With one method (a part, e.g. on a second core) its runs are only trained or
    resumed, and None is returned: the call with both methods then reuses them and writes the comparison."""
    from nvpt.robustness.fronts import final_markdown, lr_label, pick_setting

    swept = [o for o in overrides if o.split("=", 1)[0].strip() in SWEPT_KEYS]
    if swept:
        raise NVPTError(f"override {swept[0]!r} is not allowed: the final takes {', '.join(SWEPT_KEYS)} from its picks")
    for method in methods:  # the rule picks among the whole sweep, never a part of it
        for length in lengths:
            have = {s["lr"] for s in settings if (s["method"], s["length"]) == (method, length)}
            missing = sorted({float(lr) for lr in lrs} - have)
            if missing:
                raise NVPTError(f"the sweep lacks {method} at {length} tokens with lr {', '.join(f'{m:g}' for m in missing)}: "
                                "finish the sweep (bash tools/reproduce_study.sh fronts) before the final")
    picks, plans = {}, []
    for length in lengths:
        picks[length] = {m: pick_setting(settings, m, length, target) for m in methods}
        folder = Path(out) / f"p{length}"
        folder.mkdir(parents=True, exist_ok=True)
        variants = []
        for method, s in picks[length].items():
            variant = folder / f"{method}.yaml"
            base = os.path.relpath(Path(config).resolve(), folder.resolve())
            atomic_write_text(variant, f"# fronts-final (docs/protocol.md): {method} at {lr_label(s['lr'])}, {length} "
                                       f"tokens, picked for clean accuracy {target:g} % on validation\n"
                                       f"_base_: {base}\nprompt:\n  method: {method}\n  length: {length}\n"
                                       f"train:\n  base_lr: {s['lr']!r}\n")
            variants.append(str(variant))
        point = list(overrides) + [f"output_dir={folder / 'runs'}"]
        check_methods(variants, methods[0], seeds, point)
        plans.append((length, folder, point, variants, plan_comparison(config, point, variants, seeds, reuse)))
    comps = {}
    for length, folder, point, variants, jobs in plans:
        log(f"[final] {length} tokens: " + ", ".join(f"{m} {lr_label(s['lr'])}" for m, s in picks[length].items()))
        if len(methods) == 1:  # a part: the runs planned above only, no comparison of one method
            run_jobs(jobs, config, log)
            continue
        comps[length] = run_comparison(config, point, variants, seeds, methods[0], reuse, folder, log=log)
    return final_markdown(target, picks, comps) if comps else None
