"""Reliability: SIGKILL + exact resume, atomic files, untrusted files refused, numerical faults, determinism.

Tools run in real processes. Importing torch, timm and torchvision costs ~5 s per interpreter on
this machine, so a fork server (one interpreter that has imported those, and not nvpt) forks one
child per tool run; the child runs tools/<name>.py as __main__ exactly like `python tools/<name>.py`
(fresh nvpt and SpikingJelly imports, its own stdout/stderr files, its exit status or signal). A
child may first execute a few lines of fault code: SIGKILL at a training step or in the middle of
a file write, NaN in a parameter. No production code has a test hook. docs/reliability.md maps
every guarantee to the test that shows it.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from conftest import TINY, tiny_cfg
from nvpt.config import dump_config, load_config
from nvpt.engine.checkpoint import model_identity, read_checkpoint, save_checkpoint
from nvpt.engine.restore import load_run
from nvpt.pipeline import run_training
from nvpt.errors import NVPTError
from nvpt.models import build_model

ROOT = Path(__file__).resolve().parent.parent
ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HF_HUB_OFFLINE="1", MPLBACKEND="Agg",
           PYTHONPATH=str(ROOT))
ENV.pop("NVPT_DEBUG", None)

# The only fields that may differ between two runs of one config and seed (wall-clock times).
METRICS_TIMING = {"epoch_time_s"}  # metrics.jsonl lines
RESULTS_TIMING = {"eval_time_s"}  # results.json

# spike_nvpt with prompt dropout and spiking noise, so the global RNG, the noise counter, the
# optimizer momentum and the warmup+cosine schedule all have to come back for an exact resume.
# 80 training crops / batch 16 = 5 steps per epoch.
RUN = [*TINY, "data.name=textures", "data.crop_size=32", "data.train_per_class=4", "data.test_per_class=2",
       "data.val_fraction=0.25", "data.num_workers=0", "data.batch_size=16", "model.num_classes=null",
       "prompt.method=spike_nvpt", "prompt.dropout=0.2", "spike.noise_std=0.3", "train.epochs=3",
       "train.warmup_epochs=1", "train.base_lr=0.5", "train.threads=1", "eval.gaussian_std=[0.1]"]

# --------------------------------------------------------------------------- fork server

_SERVER = r'''
import json, os, runpy, sys, time
import numpy, PIL.Image, safetensors.torch, timm, torch, torchvision, yaml  # the slow imports, once
torch.set_num_threads(1)


def child(req):
    code = 1
    try:
        for fd, path in ((1, req["stdout"]), (2, req["stderr"])):
            handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(handle, fd)
            os.close(handle)
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        os.environ.clear()
        os.environ.update(req["env"])
        os.chdir(req["cwd"])
        sys.argv = list(req["argv"])
        sys.path[0] = os.path.dirname(os.path.abspath(sys.argv[0]))  # as `python tools/x.py` does
        try:
            if req["pre"]:
                exec(compile(req["pre"], "<fault>", "exec"), {"__name__": "fault"})
            runpy.run_path(sys.argv[0], run_name="__main__")
            code = 0
        except SystemExit as exc:  # what the interpreter does with sys.exit(x)
            if exc.code is None or isinstance(exc.code, int):
                code = exc.code or 0
            else:
                print(exc.code, file=sys.stderr)
                code = 1
        except BaseException:  # an uncaught exception: traceback on stderr, status 1
            sys.excepthook(*sys.exc_info())
            code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


for line in sys.stdin:
    req = json.loads(line)
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:
        child(req)
    deadline, timed_out = time.monotonic() + req["timeout"], False
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            _, status = os.waitpid(pid, 0)
            timed_out = True
            break
        time.sleep(0.01)
    print(json.dumps({"rc": os.waitstatus_to_exitcode(status), "timed_out": timed_out}), flush=True)
'''


@dataclass
class Outcome:
    rc: int  # exit status; -N when killed by signal N
    stdout: str
    stderr: str

    def lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]


class ToolServer:
    """Runs `tools/<tool> args...` in forked children of one pre-imported interpreter."""

    def __init__(self, scratch: Path):
        self.scratch = scratch
        self.count = 0
        self.proc = subprocess.Popen([sys.executable, "-u", "-c", _SERVER], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=ENV, cwd=ROOT)

    def run(self, tool: str, *args: str, pre: str | None = None, env: dict | None = None,
            timeout: float = 120) -> Outcome:
        self.count += 1
        out, err = self.scratch / f"{self.count}.out", self.scratch / f"{self.count}.err"
        request = {"argv": [str(ROOT / "tools" / tool), *map(str, args)], "cwd": str(ROOT),
                   "env": {**ENV, **(env or {})}, "pre": pre, "stdout": str(out), "stderr": str(err),
                   "timeout": timeout}
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        reply = self.proc.stdout.readline()
        assert reply, "the fork server died"
        reply = json.loads(reply)
        assert not reply["timed_out"], f"{tool} {args} ran past {timeout} s"
        return Outcome(reply["rc"], out.read_text(), err.read_text())

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def real_run(tool: str, *args: str, env: dict | None = None, timeout: float = 300) -> Outcome:
    """`python tools/<tool> args...` in a fresh interpreter (cross-checks the fork server)."""
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / tool), *map(str, args)], cwd=ROOT,
                          env={**ENV, **(env or {})}, capture_output=True, text=True, timeout=timeout)
    return Outcome(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = ToolServer(tmp_path_factory.mktemp("tool-io"))
    yield srv
    srv.close()


# --------------------------------------------------------------------------- faults (run in the child)

_PRELUDE = f"import sys\nsys.path.insert(0, {str(ROOT)!r})\n"

# SIGKILL when `epoch` is about to run its step `step` (steps 0..step-1 are done).
KILL_AT_STEP = _PRELUDE + '''
import inspect, os, signal
import nvpt.engine.run as run
real = run.train_one_epoch
def killing(batches):
    for index, batch in enumerate(batches):
        if index == {step}:
            os.kill(os.getpid(), signal.SIGKILL)
        yield batch
def train_one_epoch(*args, **kwargs):
    bound = inspect.signature(real).bind(*args, **kwargs)
    if bound.arguments["epoch"] == {epoch}:
        bound.arguments["loader"] = killing(bound.arguments["loader"])
    return real(*bound.args, **bound.kwargs)
run.train_one_epoch = train_one_epoch
'''

# SIGKILL during the `nth` write of `name`: half of the temporary file's bytes reach the disk.
KILL_IN_WRITE = _PRELUDE + '''
import os, pathlib, signal
import nvpt.engine.checkpoint as checkpoint
seen = [0]
def maybe_die(tmp):
    if pathlib.Path(tmp).name.startswith(".{name}."):
        seen[0] += 1
        if seen[0] == {nth}:
            os.truncate(tmp, os.path.getsize(tmp) // 2)
            os.kill(os.getpid(), signal.SIGKILL)
real_save = checkpoint.save_file
def save_file(tensors, filename, metadata=None):
    real_save(tensors, filename, metadata=metadata)
    maybe_die(filename)
checkpoint.save_file = save_file
real_write = pathlib.Path.write_text
def write_text(self, data, *args, **kwargs):
    result = real_write(self, data, *args, **kwargs)
    maybe_die(self)
    return result
pathlib.Path.write_text = write_text
'''

# Appends {{name, epoch, sha256}} to `log` after every checkpoint the run commits.
RECORD_SAVES = _PRELUDE + '''
import hashlib, json, pathlib
import nvpt.engine.run as run
real_save_checkpoint = run.save_checkpoint
def save_checkpoint(path, *args, **kwargs):
    real_save_checkpoint(path, *args, **kwargs)
    digest = hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()
    with open({log!r}, "a") as handle:
        handle.write(json.dumps({{"name": pathlib.Path(path).name, "epoch": kwargs["epoch"], "sha256": digest}}) + "\\n")
run.save_checkpoint = save_checkpoint
'''

# Sets one element of the prompt scale to NaN when epoch 1 starts.
NAN_AT_EPOCH_1 = '''
import inspect, torch
import nvpt.engine.run as run
real_epoch = run.train_one_epoch
def train_one_epoch(*args, **kwargs):
    bound = inspect.signature(real_epoch).bind(*args, **kwargs)
    if bound.arguments["epoch"] == 1:
        model = bound.arguments["model"]
        with torch.no_grad():
            getattr(model, "module", model).prompts.scale.view(-1)[0] = float("nan")
    return real_epoch(*bound.args, **bound.kwargs)
run.train_one_epoch = train_one_epoch
'''


# --------------------------------------------------------------------------- run folders

def read_metrics(run_dir: Path) -> list[dict]:
    """metrics.jsonl, strict JSON (NaN/Infinity are not JSON), timing fields dropped."""
    def no_constants(token):
        raise ValueError(f"metrics.jsonl holds {token}")

    lines = [json.loads(line, parse_constant=no_constants) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in line.items() if k not in METRICS_TIMING} for line in lines]


def read_results(run_dir: Path) -> dict:
    results = json.loads((run_dir / "results.json").read_text())
    return {k: v for k, v in results.items() if k not in RESULTS_TIMING}


def checkpoint_epoch(path: Path) -> int:
    """Epoch of a checkpoint; read_checkpoint raises when the file is half-written."""
    tensors, meta = read_checkpoint(path)
    assert all(torch.isfinite(t.float()).all() for k, t in tensors.items() if k.startswith("model/")), path
    return meta["epoch"]


def temp_files(run_dir: Path, name: str) -> list[Path]:
    return sorted(run_dir.glob(f".{name}.*.tmp"))


def assert_same_run(run_dir: Path, reference: Path) -> None:
    assert read_metrics(run_dir) == read_metrics(reference)
    assert read_results(run_dir) == read_results(reference)
    assert checkpoint_epoch(run_dir / "checkpoint-last.safetensors") == len(read_metrics(reference)) - 1


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("config") / "tiny.yaml"
    dump_config(tiny_cfg(*RUN), path)
    return path


@pytest.fixture(scope="module")
def reference(tmp_path_factory, config):
    """Two uninterrupted runs in fresh interpreters with different PYTHONHASHSEED, in parallel."""
    out = tmp_path_factory.mktemp("reference")
    procs = [subprocess.Popen([sys.executable, str(ROOT / "tools" / "train.py"), str(config), f"output_dir={out}",
                               f"run_name=ref{i}"], cwd=ROOT, env={**ENV, "PYTHONHASHSEED": str(i)},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in (1, 2)]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
    return out / "ref1", out / "ref2"


@pytest.fixture(scope="module")
def reference_workers(tmp_path_factory, server, config):
    """The uninterrupted run with one DataLoader worker process."""
    out = tmp_path_factory.mktemp("reference-workers")
    done = server.run("train.py", config, f"output_dir={out}", "run_name=ref", "data.num_workers=1")
    assert done.rc == 0, done.stderr[-3000:]
    return out / "ref"


# --------------------------------------------------------------------------- 5. determinism

def test_same_config_and_seed_give_identical_runs_on_cpu(reference):
    one, two = reference
    lines = read_metrics(one)
    assert [line["epoch"] for line in lines] == [0, 1, 2]
    assert read_metrics(two) == lines  # every field but epoch_time_s, bit for bit
    assert read_results(two) == read_results(one)  # every field but eval_time_s
    a, _ = read_checkpoint(one / "checkpoint-last.safetensors")
    b, _ = read_checkpoint(two / "checkpoint-last.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # weights, optimizer, RNG


def test_fork_server_matches_a_fresh_interpreter(server, reference, config, tmp_path):
    """The fork server is a faithful stand-in for `python tools/train.py`: same files, same numbers."""
    done = server.run("train.py", config, f"output_dir={tmp_path}", "run_name=forked")
    assert done.rc == 0, done.stderr[-3000:]
    assert_same_run(tmp_path / "forked", reference[0])


# --------------------------------------------------------------------------- 1. kill and resume

@pytest.mark.parametrize("name, fault, after_kill", [
    # SIGKILL in the middle of epoch 1, after 2 of its 5 optimizer steps: epoch 0's checkpoint stays
    ("mid-epoch", KILL_AT_STEP.format(epoch=1, step=2), {"last": 0, "metrics": 1}),
    # SIGKILL while epoch 1's checkpoint-last is half on disk: the previous one stays readable
    ("checkpoint-write", KILL_IN_WRITE.format(name="checkpoint-last.safetensors", nth=2),
     {"last": 0, "metrics": 1, "temp": "checkpoint-last.safetensors"}),
    # SIGKILL while epoch 1's metrics.jsonl is half on disk (after its checkpoint-last was committed)
    ("metrics-write", KILL_IN_WRITE.format(name="metrics.jsonl", nth=2),
     {"last": 1, "metrics": 1, "temp": "metrics.jsonl"}),
])
def test_sigkill_then_resume_equals_uninterrupted_run(server, reference, config, tmp_path, name, fault, after_kill):
    run_dir = tmp_path / "cut"
    killed = server.run("train.py", config, f"output_dir={tmp_path}", "run_name=cut", pre=fault)
    assert killed.rc == -signal.SIGKILL, f"the fault never fired: {killed.stderr[-2000:]}"
    if "temp" in after_kill:  # the kill really hit a write: a half temporary file is left behind
        assert temp_files(run_dir, after_kill["temp"]), sorted(p.name for p in run_dir.iterdir())
    assert checkpoint_epoch(run_dir / "checkpoint-last.safetensors") == after_kill["last"]
    assert len(read_metrics(run_dir)) == after_kill["metrics"]  # complete JSON lines only
    assert not (run_dir / "results.json").exists()

    resumed = server.run("train.py", config, f"output_dir={tmp_path}", f"train.resume={run_dir}")
    assert resumed.rc == 0, resumed.stderr[-3000:]
    assert_same_run(run_dir, reference[0])


def test_sigkill_then_resume_with_loader_workers(server, reference_workers, config, tmp_path):
    """data.num_workers > 0 (the default is 4): drawing the workers' seeds must not shift the RNG stream."""
    run_dir = tmp_path / "cut"
    killed = server.run("train.py", config, f"output_dir={tmp_path}", "run_name=cut", "data.num_workers=1",
                        pre=KILL_AT_STEP.format(epoch=1, step=2))
    assert killed.rc == -signal.SIGKILL, killed.stderr[-2000:]
    resumed = server.run("train.py", config, f"output_dir={tmp_path}", f"train.resume={run_dir}",
                         "data.num_workers=1")
    assert resumed.rc == 0, resumed.stderr[-3000:]
    assert_same_run(run_dir, reference_workers)


def test_sigkill_before_the_first_checkpoint_can_be_resumed(server, reference, config, tmp_path):
    """A run killed in epoch 0 leaves config.yaml and no checkpoint; resuming it must not be a dead end
    (a fresh start in the same folder is refused: 'already exists; pass train.resume=')."""
    run_dir = tmp_path / "cut"
    killed = server.run("train.py", config, f"output_dir={tmp_path}", "run_name=cut",
                        pre=KILL_AT_STEP.format(epoch=0, step=2))
    assert killed.rc == -signal.SIGKILL, killed.stderr[-2000:]
    assert not (run_dir / "checkpoint-last.safetensors").exists()
    resumed = server.run("train.py", config, f"output_dir={tmp_path}", f"train.resume={run_dir}")
    assert resumed.rc == 0, resumed.stderr[-3000:]
    assert_same_run(run_dir, reference[0])


# --------------------------------------------------------------------------- 4. numerical faults

def error_line(outcome: Outcome) -> str:
    lines = outcome.lines()
    assert lines and lines[-1].startswith("error: "), outcome.stderr[-3000:]
    return lines[-1]


def test_nan_in_a_prompt_parameter_stops_and_keeps_the_last_good_checkpoint(server, config, tmp_path):
    log = tmp_path / "saves.jsonl"
    done = server.run("train.py", config, f"output_dir={tmp_path}", "run_name=nan",
                      pre=RECORD_SAVES.format(log=str(log)) + NAN_AT_EPOCH_1)
    assert done.rc == 2, done.stderr[-3000:]
    assert re.match(r"error: loss is nan at epoch 1 step 0\b", error_line(done))
    run_dir = tmp_path / "nan"
    saves = [json.loads(line) for line in log.read_text().splitlines()]
    assert {s["epoch"] for s in saves} == {0}  # nothing was saved after the fault
    for save in saves:  # epoch 0's files: readable, finite and byte for byte what was committed
        path = run_dir / save["name"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == save["sha256"]
        assert checkpoint_epoch(path) == 0
    assert [line["epoch"] for line in read_metrics(run_dir)] == [0]
    assert not (run_dir / "results.json").exists()


def test_huge_learning_rate_diverges_in_epoch_1_and_keeps_epoch_0(server, config, tmp_path):
    """Realistic divergence: base_lr 1e10 trains epoch 0 to a finite loss, then epoch 1 blows up.
    (Written 1.0e+10: PyYAML reads 1e10 as a string, see test_bad_input.)"""
    log = tmp_path / "saves.jsonl"
    done = server.run("train.py", config, f"output_dir={tmp_path}", "run_name=lr", "train.base_lr=1.0e+10",
                      pre=RECORD_SAVES.format(log=str(log)))
    assert done.rc == 2, done.stderr[-3000:]
    found = re.match(r"error: loss is (nan|inf|-inf) at epoch (\d+) step (\d+)\b", error_line(done))
    assert found, error_line(done)
    epoch = int(found.group(2))
    assert epoch >= 1, "diverged in epoch 0: this check needs a completed epoch before the fault"
    run_dir = tmp_path / "lr"
    last = run_dir / "checkpoint-last.safetensors"
    committed = [s for s in map(json.loads, log.read_text().splitlines()) if s["name"] == last.name]
    assert committed[-1]["epoch"] == epoch - 1
    assert hashlib.sha256(last.read_bytes()).hexdigest() == committed[-1]["sha256"]
    assert checkpoint_epoch(last) == epoch - 1
    assert len(read_metrics(run_dir)) == epoch


def test_non_finite_validation_loss_is_a_numerical_fault(server, config, tmp_path):
    """One step per epoch at base_lr 1e30: epoch 0's training loss is finite but the update sends the
    validation loss to NaN. That epoch must not be recorded or checkpointed as good."""
    done = server.run("train.py", config, f"output_dir={tmp_path}", "run_name=val", "train.base_lr=1.0e+30",
                      "data.batch_size=80")
    assert done.rc == 2, done.stderr[-3000:]
    assert re.search(r"\bloss is (nan|inf|-inf)\b.*\bepoch 0\b", error_line(done)), error_line(done)
    run_dir = tmp_path / "val"
    for path in run_dir.glob("checkpoint-*.safetensors"):
        _, meta = read_checkpoint(path)
        numbers = [v for line in meta.get("history", []) for v in line.values() if isinstance(v, float)]
        assert all(math.isfinite(v) for v in numbers), f"{path.name} records a non-finite loss: {meta['history']}"
    if (run_dir / "metrics.jsonl").exists():
        read_metrics(run_dir)  # strict JSON: no NaN


# --------------------------------------------------------------------------- 2. untrusted files

class RunsCode:
    """Unpickling this runs a shell command: what a malicious .pth does."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture
def evil(tmp_path):
    """(path of a malicious torch checkpoint, marker file its payload creates)."""
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"head.weight": torch.zeros(5, 48)}, "payload": RunsCode(marker)}, path)
    # control: the same kind of file does run its payload when fully unpickled, so the refusals
    # below mean something
    control = tmp_path / "control"
    torch.save({"payload": RunsCode(control)}, tmp_path / "control.pth")
    torch.load(tmp_path / "control.pth", weights_only=False)
    assert control.exists()
    return path, marker


def copy_run(run_dir: Path, dest: Path) -> Path:
    shutil.copytree(run_dir, dest)
    return dest


def test_malicious_pickle_as_pretrained_file_is_refused(evil, tmp_path):
    path, marker = evil
    for name in ("evil.pth", "evil.bin", "evil.safetensors"):
        target = tmp_path / name
        if target != path:
            shutil.copy(path, target)
        with pytest.raises(NVPTError, match=rf"cannot read weights file .*{re.escape(name)}"):
            build_model(tiny_cfg(f"model.pretrained_file={target}"))
    assert not marker.exists()


def test_malicious_pickle_as_resume_is_refused(evil, reference, tmp_path):
    path, marker = evil
    with pytest.raises(NVPTError, match=r"cannot read checkpoint .*evil\.pth"):
        run_training(tiny_cfg(*RUN, f"output_dir={tmp_path}", f"train.resume={path}"), log=lambda m: None,
                     show_progress=False)
    run_dir = copy_run(reference[0], tmp_path / "swapped")
    shutil.copy(path, run_dir / "checkpoint-last.safetensors")
    with pytest.raises(NVPTError, match=r"cannot read checkpoint .*checkpoint-last\.safetensors"):
        run_training(tiny_cfg(*RUN, f"output_dir={tmp_path}", f"train.resume={run_dir}"), log=lambda m: None,
                     show_progress=False)
    assert not marker.exists()


def test_malicious_pickle_given_to_load_run_is_refused(evil, reference, tmp_path):
    path, marker = evil
    run_dir = copy_run(reference[0], tmp_path / "run")
    shutil.copy(path, run_dir / "evil.pth")
    with pytest.raises(NVPTError, match=r"cannot read checkpoint .*evil\.pth"):
        load_run(run_dir / "evil.pth")
    shutil.copy(path, run_dir / "checkpoint-best.safetensors")
    with pytest.raises(NVPTError, match=r"cannot read checkpoint .*checkpoint-best\.safetensors"):
        load_run(run_dir)
    assert not marker.exists()


def test_yaml_with_python_object_tags_is_refused(reference, tmp_path):
    marker = tmp_path / "pwned"
    tag = f'!!python/object/apply:os.system ["touch {marker}"]'
    for text in (f"seed: {tag}\n", f"{tag}\n", f"model:\n  name: !!python/name:os.system\n"):
        path = tmp_path / "tagged.yaml"
        path.write_text(text)
        with pytest.raises(NVPTError, match="Python object tags are refused"):
            load_config(path)
    run_dir = copy_run(reference[0], tmp_path / "run")  # a run folder with a poisoned config.yaml
    (run_dir / "config.yaml").write_text(f"seed: {tag}\n")
    with pytest.raises(NVPTError, match="Python object tags are refused"):
        load_run(run_dir)
    # an override is YAML too: a tag there stays an inert string (and is then refused as a value)
    with pytest.raises(NVPTError, match="seed"):
        load_config(None, [f"seed={tag}"])
    assert not marker.exists()


def test_truncated_checkpoint_gives_a_clear_error(reference, tmp_path):
    run_dir = copy_run(reference[0], tmp_path / "run")
    last = run_dir / "checkpoint-last.safetensors"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    with pytest.raises(NVPTError, match=r"cannot read checkpoint .*checkpoint-last\.safetensors.*truncated"):
        read_checkpoint(last)
    with pytest.raises(NVPTError, match=r"cannot read checkpoint .*checkpoint-last\.safetensors"):
        run_training(tiny_cfg(*RUN, f"output_dir={tmp_path}", f"train.resume={run_dir}"), log=lambda m: None,
                     show_progress=False)
    with pytest.raises(NVPTError, match=r"cannot read checkpoint .*checkpoint-last\.safetensors"):
        load_run(last)
    weights = tmp_path / "backbone.safetensors"  # a truncated backbone file
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in build_model(tiny_cfg()).backbone.state_dict().items()}, str(weights))
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(NVPTError, match=r"cannot read weights file .*backbone\.safetensors"):
        build_model(tiny_cfg(f"model.pretrained_file={weights}"))


def foreign_checkpoint(path: Path, *overrides: str) -> Path:
    """A resumable checkpoint (optimizer and RNG included) of another model, for RUN's dataset."""
    from nvpt.engine.optim import WarmupCosine, build_optimizer

    cfg = tiny_cfg(*RUN, "model.num_classes=20", *overrides)
    model = build_model(cfg)
    optimizer = build_optimizer(model, cfg.train, cfg.data.batch_size)
    save_checkpoint(path, model, model_identity(model, cfg), optimizer, WarmupCosine(optimizer, 15, 5, 0.0),
                    epoch=0, best={"acc": 1.0, "epoch": 0}, history=[])
    return path


@pytest.mark.parametrize("overrides, names", [
    (["prompt.method=vpt_deep"], r"method: checkpoint 'vpt_deep' vs model 'spike_nvpt'"),
    (["model.name=vit_small_patch16_224"], r"model_name: checkpoint 'vit_small_patch16_224' vs model 'vit_tiny_patch16_224'"),
    (["prompt.length=6"], r"wrong shape: prompts\.current \(3, 6, 48\)!=\(3, 4, 48\)"),
    (["prompt.deep=false"], r"wrong shape: prompts\.current \(1, 4, 48\)!=\(3, 4, 48\)"),
])
def test_checkpoint_of_another_model_names_the_mismatch(reference, tmp_path, overrides, names):
    ckpt = foreign_checkpoint(tmp_path / "other.safetensors", *overrides)
    with pytest.raises(NVPTError, match=names):  # as train.resume
        run_training(tiny_cfg(*RUN, f"output_dir={tmp_path}", f"train.resume={ckpt}"), log=lambda m: None,
                     show_progress=False)
    run_dir = copy_run(reference[0], tmp_path / "run")  # as the best checkpoint of a run folder
    shutil.copy(ckpt, run_dir / "checkpoint-best.safetensors")
    with pytest.raises(NVPTError, match=names):
        load_run(run_dir)


def test_backbone_file_of_another_architecture_names_the_mismatch(tmp_path):
    from safetensors.torch import save_file

    other = build_model(tiny_cfg("model.kwargs={patch_size: 8, depth: 2, embed_dim: 64, num_heads: 2}"))
    weights = tmp_path / "other.safetensors"
    save_file({k: v.contiguous() for k, v in other.backbone.state_dict().items()}, str(weights))
    with pytest.raises(NVPTError, match=r"does not fit VisionTransformer .*wrong shape: blocks\.0\.attn\.proj\.bias \(64,\)!=\(48,\).*missing: blocks\.2\."):
        build_model(tiny_cfg(f"model.pretrained_file={weights}"))
