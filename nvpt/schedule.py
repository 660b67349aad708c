"""Work through a resumable plan of runs with one or many worker processes (the engine of `make paper`).

The plan (task -> nvpt.comparison.Job list) becomes units:
- a train unit per run: train it, or resume it, with its evaluation deferred (nvpt.pipeline.train_only);
- an eval unit per task (per group of its runs that share a test set and an evaluation): once every run of the
  group has finished training, score them all in one pass over the test batches, each batch corrupted once per
  set (nvpt.pipeline.evaluate_trained), writing each run's results.json.
A run whose results.json exists is done and never touched again; one whose training finished waits only for its
evaluation; anything else resumes from its checkpoint-last.

Workers. `work` pulls the next unit it can claim (nvpt.engine.claims: a lock file beside each run folder; an eval
unit claims all its runs) until every unit is done, waiting while the runs it needs are held by live processes.
`run_workers` starts one process per visible GPU (CUDA_VISIBLE_DEVICES set to one device each), or as many as
asked. `shard_units` keeps the runs i, i+n, i+2n, ... of the plan (1-based i/n, a SLURM array), with their eval
units restricted to them. Every unit a process carries out is appended to <out>/journal.jsonl.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import socket
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from nvpt.comparison import Job
from nvpt.engine.checkpoint import BEST
from nvpt.engine.claims import try_claim_all
from nvpt.engine.plan import epochs_done, plan_run
from nvpt.errors import NVPTError
from nvpt.robustness.runs import eval_key, test_data_key

POLL_S = 5.0


@dataclass
class Unit:
    kind: str  # train | eval
    task: str
    jobs: list[Job] = field(default_factory=list)

    @property
    def name(self) -> str:
        runs = ", ".join(job.run_dir.name for job in self.jobs)
        return f"{self.kind} {runs}" if self.kind == "train" else f"evaluate {self.task}: {runs}"


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """'i/n' (1 <= i <= n) -> (i, n); None -> None; anything else is a one-line error."""
    if text is None:
        return None
    parts = text.split("/")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise NVPTError(f"--shard {text!r}: use i/n with 1 <= i <= n, e.g. --shard $SLURM_ARRAY_TASK_ID/8")
    i, n = int(parts[0]), int(parts[1])
    if not 1 <= i <= n:
        raise NVPTError(f"--shard {text}: i must be between 1 and n (got {i}/{n}); e.g. --shard 1/{max(n, 1)}")
    return i, n


def trained(job: Job) -> bool:
    """Training finished (the last epoch's checkpoint and the best one are there); results.json may be missing."""
    return (job.run_dir / BEST).is_file() and epochs_done(job.run_dir) >= job.cfg.train.epochs


def evaluated(job: Job) -> bool:
    return (job.run_dir / "results.json").is_file()


def make_units(plans: dict[str, list[Job]], shard: tuple[int, int] | None = None) -> list[Unit]:
    """Train units then eval units, task by task, in the plan's order; with a shard only its runs."""
    flat = [(task, job) for task, jobs in plans.items() for job in jobs]
    if shard is not None:
        i, n = shard
        flat = flat[i - 1::n]
    units = []
    for task in plans:
        jobs = [job for t, job in flat if t == task]
        units += [Unit("train", task, [job]) for job in jobs]
        groups: dict[tuple, list[Job]] = {}
        for job in jobs:
            key = (test_data_key(job.cfg), eval_key(job.cfg), job.cfg.data.eval_batch_size)
            groups.setdefault(key, []).append(job)
        units += [Unit("eval", task, group) for group in groups.values()]
    return units


def state(unit: Unit) -> str:
    """done | ready | waiting (an eval unit whose runs have not all finished training)."""
    if unit.kind == "train":
        return "done" if evaluated(unit.jobs[0]) or trained(unit.jobs[0]) else "ready"
    if all(evaluated(job) for job in unit.jobs):
        return "done"
    return "ready" if all(evaluated(job) or trained(job) for job in unit.jobs) else "waiting"


def _journal(out: Path | None, unit: Unit, seconds: float) -> None:
    if out is None:
        return
    line = json.dumps({"unit": unit.kind, "task": unit.task, "runs": [job.run_dir.name for job in unit.jobs],
                       "host": socket.gethostname(), "pid": os.getpid(), "seconds": round(seconds, 1),
                       "device": os.environ.get("CUDA_VISIBLE_DEVICES")}) + "\n"
    out.mkdir(parents=True, exist_ok=True)
    fd = os.open(out / "journal.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())  # one write per line with O_APPEND: lines of several processes never mix
    finally:
        os.close(fd)


def carry_out(unit: Unit, log: Callable[[str], None]) -> None:
    from nvpt.pipeline import evaluate_trained, train_only

    indent = lambda msg: log(textwrap.indent(msg, "    "))  # noqa: E731
    if unit.kind == "train":
        job = unit.jobs[0]
        action = plan_run(job.cfg, job.run_dir, True)  # again, now that the run is ours
        if action == "resume":
            job.cfg.train["resume"] = str(job.run_dir)
        log(f"{'resuming' if action == 'resume' else 'training'} {job.run_dir} (evaluation deferred)")
        train_only(job.cfg, log=indent, show_progress=False)
        if not trained(job):
            raise NVPTError(f"{job.run_dir} ended without checkpoint-last of epoch {job.cfg.train.epochs - 1} and "
                            "checkpoint-best; move it away and rerun")
    else:
        todo = [job for job in unit.jobs if not evaluated(job)]
        log(f"evaluating {unit.task}: {len(todo)} run(s) in one pass over the test set")
        evaluate_trained([job.run_dir for job in todo], log=indent)


def work(units: list[Unit], log: Callable[[str], None] = print, journal: Path | None = None,
         poll_s: float = POLL_S) -> int:
    """Carry out every unit not done yet, claiming its runs first; returns how many this process carried out."""
    pending, done = list(units), 0
    while pending:
        progressed = False
        for unit in list(pending):
            if state(unit) == "done":
                pending.remove(unit)
                continue
            if state(unit) == "waiting":
                continue
            claims = try_claim_all([job.run_dir for job in unit.jobs], unit.name)
            if claims is None:
                continue
            try:
                if state(unit) == "ready":  # another process may have finished it before our claim
                    start = time.time()
                    carry_out(unit, log)
                    _journal(journal, unit, time.time() - start)
                    done += 1
            finally:
                for claim in claims:
                    claim.release()
            pending.remove(unit)
            progressed = True
        if pending and not progressed:
            time.sleep(poll_s)  # the runs left are held by other live processes
    return done


def visible_gpus() -> list[str]:
    """The CUDA devices this process may use, as CUDA_VISIBLE_DEVICES entries."""
    import torch

    if not torch.cuda.is_available():
        return []
    listed = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    count = torch.cuda.device_count()
    return listed[:count] if listed else [str(i) for i in range(count)]


def _worker(index: int, device: str | None, build_units: Callable[[], list[Unit]], journal: Path | None,
            poll_s: float) -> None:
    if device is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = device  # before this process touches CUDA
    prefix = f"[worker {index}{f' gpu {device}' if device is not None else ''}] "
    work(build_units(), lambda msg: print(textwrap.indent(msg, prefix), flush=True), journal, poll_s)


def run_workers(build_units: Callable[[], list[Unit]], workers: int, devices: list[str], log: Callable[[str], None],
                journal: Path | None = None, poll_s: float = POLL_S) -> None:
    """`workers` processes (spawned), worker i on devices[i % len(devices)] when there are devices; each builds its
    units with build_units (a picklable callable) and pulls from them until all are done."""
    context = multiprocessing.get_context("spawn")  # CUDA cannot be forked
    procs = []
    for i in range(workers):
        device = devices[i % len(devices)] if devices else None
        procs.append(context.Process(target=_worker, args=(i, device, build_units, journal, poll_s),
                                     name=f"nvpt-worker-{i}"))
    log(f"{workers} worker processes" + (f" on GPUs {', '.join(devices)}" if devices else " on the CPU"))
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join()
    failed = [(i, proc.exitcode) for i, proc in enumerate(procs) if proc.exitcode != 0]
    if failed:
        raise NVPTError(f"worker(s) {', '.join(f'{i} (exit {code})' for i, code in failed)} failed: see their "
                        "lines above; rerun the same command to resume")
