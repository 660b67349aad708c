"""Train (or collect) several methods over several seeds and compare them with confidence intervals
(the logic behind tools/compare.py; tools/reproduce_paper.py runs it once per task).

Run i of method m is <output_dir>/<config stem>-<m>-s<i>, trained with prompt.method=<m>, seed=<i>.
A method's own recipe, when the config folder holds <config stem>_<m>.yaml (e.g. dtd_full.yaml),
is read from that file instead. A method entry may also be a YAML file (a variant, e.g. an
study variant in configs/study/): it is labelled by its file name and trained as it says.
With reuse (the default) a run folder that already holds results.json for the same config is
collected instead of retrained, and an unfinished one is resumed (nvpt.engine.plan); a finished
run evaluated with an older corruption code version (other noisy images) is refused unless
tools/eval_robustness.py has re-evaluated it (finished_summary). Writes
comparison.md, comparison.json and comparison.png/.pdf to `out`.

    jobs = plan_comparison("configs/dtd.yaml", [], ["spike_nvpt", "vpt_deep"], seeds=3)
    comp = run_comparison("configs/dtd.yaml", [], ["spike_nvpt", "vpt_deep"], seeds=3)
"""
from __future__ import annotations

import json
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from nvpt.config import METHODS, Config, load_config
from nvpt.engine.checkpoint import BEST, atomic_write_text
from nvpt.engine.plan import plan_run
from nvpt.errors import NVPTError
from nvpt.robustness.compare import compare_runs, comparison_markdown, family_markdown, plot_comparison, summary_markdown
from nvpt.robustness.corruptions import CORRUPTION_VERSION, RERUN_HINT, corruption_version
from nvpt.robustness.evaluate import robustness_sets
from nvpt.robustness.report import write_json

# set per run by the comparison
OWN_KEYS = ("prompt.method", "seed", "run_name")


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
            run_dir = Path(cfg.output_dir) / cfg.run_name
            jobs.append(Job(method, seed, cfg, run_dir, plan_run(cfg, run_dir, reuse)))
    for job in jobs:
        if job.action == "reuse":
            finished_summary(job.run_dir)  # an outdated one fails now, before any training
    labels = list(dict.fromkeys(job.method for job in jobs))
    if len(labels) != len(methods):
        raise NVPTError(f"--methods gives two entries the same label: {' '.join(methods)}")
    return jobs


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise NVPTError(f"cannot read {path}: {str(exc).splitlines()[0]}") from None


def finished_summary(run_dir: Path) -> dict:
    """A finished run's results.json. When it was evaluated with an older corruption code version
    (CORRUPTION_VERSION: other noisy images), its corrupted accuracies come from the
    robustness/robustness.json that `tools/eval_robustness.py RUN` wrote with the current version
    (checkpoint-best, the same sets and noise seed); without one it is an error."""
    results = _read_json(run_dir / "results.json")
    version = corruption_version(results)
    if version == CORRUPTION_VERSION or not results.get("sets"):
        return results
    redo = run_dir / "robustness" / "robustness.json"
    if redo.is_file():
        again = _read_json(redo)
        if (corruption_version(again) == CORRUPTION_VERSION and Path(str(again.get("checkpoint", ""))).name == BEST
                and set(again.get("sets", {})) == set(results["sets"]) and again.get("noise_seed") == results.get("noise_seed")):
            return {**results, **{k: v for k, v in again.items() if k != "reference"}}
    raise NVPTError(f"run {run_dir} was evaluated with corruption code version {version} (this code makes version "
                    f"{CORRUPTION_VERSION}: other noisy images); {RERUN_HINT.replace('their', 'its').replace('RUN', str(run_dir))}, "
                    f"or retrain it into another output_dir")


def run_comparison(config: str | Path, overrides: list[str], methods: list[str], seeds: int,
                   reference: str = "vpt_deep", reuse: bool = True, out: str | Path | None = None,
                   log: Callable[[str], None] = print) -> dict:
    """Train, resume or collect every run, then write and return the comparison (compare_runs' dict)."""
    check_methods(methods, reference, seeds, overrides)
    jobs = plan_comparison(config, overrides, methods, seeds, reuse)
    from nvpt.pipeline import run_training  # timm and the engine: only once the plan holds

    labels = list(dict.fromkeys(job.method for job in jobs))
    results: dict[str, list[dict]] = {m: [] for m in labels}
    for i, job in enumerate(jobs, 1):
        head = f"[{i}/{len(jobs)}] {job.method} seed {job.seed} ..."
        if job.action == "reuse":
            log(f"{head} reused {job.run_dir}")
        else:
            log(f"{head} {'resuming' if job.action == 'resume' else 'training'} {job.run_dir}")
            if job.action == "resume":
                job.cfg.train["resume"] = str(job.run_dir)
            start = time.time()
            run_training(job.cfg, config_path=config, log=lambda msg: log(textwrap.indent(msg, "    ")))
            log(f"{head} done in {time.time() - start:.0f} s")
        results[job.method].append(finished_summary(job.run_dir))

    comp = compare_runs(results, reference=reference)
    base = load_config(config, overrides)
    out = Path(out) if out else Path(base.output_dir) / f"compare-{Path(config).stem}"
    table = summary_markdown(comp) + "\n" + family_markdown(comp) + "\n" + comparison_markdown(comp)
    write_json({**comp, "config": str(config), "overrides": list(overrides),
                "runs": {m: [str(job.run_dir) for job in jobs if job.method == m] for m in labels}},
               out / "comparison.json")
    atomic_write_text(out / "comparison.md", f"# {Path(config).stem}: {' vs '.join(labels)}\n\n{table}")
    plots = plot_comparison(comp, out / "comparison")
    log(table.rstrip("\n"))
    log(f"wrote {out / 'comparison.md'}, comparison.json, {', '.join(p.name for p in plots)}")
    return comp
