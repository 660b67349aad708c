"""nvpt.schedule and nvpt.engine.claims: worker processes pulling runs from the paper's resumable plan, SLURM
shards, claims (lock files) and their reclamation, and the deferred shared evaluation of a task's runs."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

import torchvision_layouts as layouts
from conftest import TINY, run_tool
from nvpt.engine.claims import break_claims, holder, lock_path, try_claim, try_claim_all
from nvpt.errors import NVPTError
from nvpt.paper import plan
from nvpt.schedule import make_units, parse_shard

TINY_MODEL = [o for o in TINY if not o.startswith("model.num_classes=")]


def tiny_overrides(data: Path) -> list[str]:
    return [f"data.root={data}", "data.vtab1k=false", *TINY_MODEL, "data.num_workers=0", "train.epochs=1",
            "train.warmup_epochs=0", "train.threads=1", "data.batch_size=32", "eval.gaussian_std=[0.2]",
            "eval.corruptions=[shot_noise]", "eval.severities=[5]"]


def test_shards_partition_the_plan(tmp_path):
    plans = plan(["dtd", "oxford_iiit_pet"], ["spike_nvpt", "vpt_deep", "linear", "full"], 3,
                 [f"output_dir={tmp_path}"])
    every = [job.run_dir for jobs in plans.values() for job in jobs]
    assert len(every) == 24
    for n in (1, 5, 24, 30):
        shards = [make_units(plans, (i, n)) for i in range(1, n + 1)]
        trained = [u.jobs[0].run_dir for units in shards for u in units if u.kind == "train"]
        assert sorted(trained) == sorted(every)  # every run in exactly one shard
        for units in shards:  # a shard evaluates only its own runs
            own = {u.jobs[0].run_dir for u in units if u.kind == "train"}
            assert {job.run_dir for u in units if u.kind == "eval" for job in u.jobs} == own
    assert make_units(plans, (2, 5)) == make_units(plans, (2, 5))  # deterministic
    whole = make_units(plans)
    assert [u.kind for u in whole].count("eval") == 2 and len(whole[-1].jobs) == 12  # one shared pass per task


@pytest.mark.parametrize("text", ["0/2", "3/2", "1/0", "a/b", "1-2", "1/2/3", ""])
def test_bad_shard_is_one_line(text, tmp_path, monkeypatch, capsys):
    with pytest.raises(NVPTError, match="--shard"):
        parse_shard(text)
    rc, _, err = run_tool(monkeypatch, capsys, "reproduce_paper", "--shard", text, "--out", tmp_path / "p")
    assert rc == 2 and err.startswith("error: --shard") and err.count("\n") == 1
    assert parse_shard("3/8") == (3, 8) and parse_shard(None) is None


def test_claims_are_exclusive_and_stale_ones_reclaimed(tmp_path):
    run = tmp_path / "dtd-linear-s0"
    first = try_claim(run, "train")
    assert first is not None and lock_path(run).is_file() and holder(lock_path(run))["pid"] == os.getpid()
    assert try_claim(run) is None  # held by a live process (this one)
    assert try_claim_all([tmp_path / "other", run]) is None and not lock_path(tmp_path / "other").exists()
    first.release()
    assert not lock_path(run).exists()

    # a claim left by a process that has exited on this host is reclaimed
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock_path(run).write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid, "start": "1"}))
    again = try_claim(run)
    assert again is not None and holder(lock_path(run))["pid"] == os.getpid()
    again.release()
    # a live process's claim is kept, and so is one from another host (it cannot be checked from here)
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        from nvpt.engine.claims import _start_time

        lock_path(run).write_text(json.dumps({"host": socket.gethostname(), "pid": alive.pid,
                                              "start": _start_time(alive.pid)}))
        assert try_claim(run) is None
        # the same pid with another start time: the pid was reused, the claim is stale
        lock_path(run).write_text(json.dumps({"host": socket.gethostname(), "pid": alive.pid, "start": "1"}))
        assert try_claim(run) is not None
    finally:
        alive.kill()
        alive.wait()
    lock_path(run).write_text(json.dumps({"host": "elsewhere.example", "pid": dead.pid}))
    assert try_claim(run) is None
    assert break_claims([run, tmp_path / "nothing"]) == 1 and try_claim(run) is not None


def test_two_workers_do_every_run_once_and_share_the_evaluation(tmp_path, monkeypatch, capsys):
    data = tmp_path / "data"
    layouts.write_dtd(data, per_list=2)
    out = tmp_path / "paper"
    args = [*tiny_overrides(data), "--tasks", "dtd", "--methods", "linear", "vpt_deep", "--seeds", "2",
            "--out", out]
    rc, stdout, err = run_tool(monkeypatch, capsys, "reproduce_paper", *args, "--workers", "2")
    assert rc == 0, err
    journal = [json.loads(line) for line in (out / "journal.jsonl").read_text().splitlines()]
    runs = [f"dtd-{m}-s{s}" for m in ("linear", "vpt_deep") for s in (0, 1)]
    trained = Counter(r for line in journal if line["unit"] == "train" for r in line["runs"])
    assert trained == Counter(runs)  # every run trained exactly once
    evals = [line for line in journal if line["unit"] == "eval"]
    assert len(evals) == 1 and sorted(evals[0]["runs"]) == runs  # one shared pass over dtd's test set
    assert not list(out.glob("*.lock")) and (out / "results.md").is_file()

    # the shared pass wrote what each run's own evaluation computes
    from nvpt.robustness.runs import evaluate_runs, run_entry

    import torch
    entry = run_entry(out / "dtd-vpt_deep-s1" / "checkpoint-best.safetensors")
    alone = evaluate_runs([entry], torch.device("cpu")).summaries[0]
    stored = json.loads((out / "dtd-vpt_deep-s1" / "results.json").read_text())
    assert stored["clean"] == alone["clean"] and stored["sets"] == alone["sets"] and stored["eval_shared_by"] == 4
    assert stored["best_epoch"] == 0 and stored["images"]["test"] == 94 and stored["prompt_bits"]

    # a restart finds everything done: nothing is trained or evaluated again
    rc, _, err = run_tool(monkeypatch, capsys, "reproduce_paper", *args, "--workers", "1")
    assert rc == 0, err
    assert len((out / "journal.jsonl").read_text().splitlines()) == len(journal)
