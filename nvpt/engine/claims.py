"""Claims on run folders, so that several processes (one per GPU, or SLURM array tasks sharing a folder) can
pull runs from one resumable plan without two of them working on the same run.

A claim is the file `<run folder>.lock` beside the run folder (not inside it: an empty or missing folder means
"train from scratch", nvpt.engine.plan). It is created with O_CREAT | O_EXCL, which succeeds for exactly one
process, and holds JSON: the holder's host, pid, the pid's start time and when it was claimed.

Stale claims. A process that dies (killed, out of memory, node rebooted) leaves its lock file behind:
- on the same host, a claim whose pid no longer runs (or now belongs to a process started at another time) is
  reclaimed automatically by the next process that wants the run;
- a claim made on another host cannot be checked from here and is kept. After making sure that no job of
  the plan still runs, delete the `*.lock` files beside the run folders (`find runs/paper -name '*.lock'
  -delete`) or pass `--break-locks` to tools/reproduce_paper.py.
A run folder itself is never lost by a stale claim: the run resumes from its checkpoint-last.

    claim = try_claim(run_dir)          # None: another live process holds it
    if claim:
        try: ...
        finally: claim.release()
"""
from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

SUFFIX = ".lock"
UNWRITTEN_GRACE_S = 60.0  # an empty lock file younger than this is being written by its holder


def lock_path(run_dir: Path) -> Path:
    run_dir = Path(run_dir)
    return run_dir.with_name(run_dir.name + SUFFIX)


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux /proc), None where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22 of stat: starttime


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def holder(path: Path) -> dict | None:
    """The claim's JSON, {} while its holder is still writing it, None when there is no claim."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return None
    try:
        info = json.loads(text)
    except ValueError:
        return {}
    return info if isinstance(info, dict) else {}


def is_stale(info: dict, path: Path) -> bool:
    """Whether a claim's holder is known to be gone (same host only; see the module's docstring)."""
    if not info:  # empty or damaged: stale once it has stayed so for a while
        try:
            return time.time() - Path(path).stat().st_mtime > UNWRITTEN_GRACE_S
        except FileNotFoundError:
            return False
    if info.get("host") != socket.gethostname() or not isinstance(info.get("pid"), int):
        return False
    pid = info["pid"]
    if not pid_alive(pid):
        return True
    start = info.get("start")
    return start is not None and _start_time(pid) not in (None, start)  # the pid was reused by another process


@dataclass
class Claim:
    path: Path
    info: dict

    def release(self) -> None:
        """Remove the lock file if it is still ours."""
        if holder(self.path) == self.info:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass


def try_claim(run_dir: Path, what: str = "") -> Claim | None:
    """Claim `run_dir` for this process; None when another live process holds it. A stale claim is reclaimed."""
    path = lock_path(run_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    info = {"host": socket.gethostname(), "pid": os.getpid(), "start": _start_time(os.getpid()),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "what": what}
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            current = holder(path)
            if current is None:  # released in the meantime
                continue
            if not is_stale(current, path):
                return None
            # reclaim: move the stale file aside (one process's rename wins); if what we moved is not the stale
            # claim we judged (it was just replaced by a live one), put it back
            aside = path.with_name(f"{path.name}.stale-{os.getpid()}-{time.time_ns()}")
            try:
                os.rename(path, aside)
            except FileNotFoundError:
                continue
            if holder(aside) != current:
                try:
                    os.link(aside, path)
                except FileExistsError:
                    pass
                os.unlink(aside)
                return None
            os.unlink(aside)
            continue
        with os.fdopen(fd, "w") as handle:
            handle.write(json.dumps(info))
            handle.flush()
            os.fsync(handle.fileno())
        return Claim(path, info)
    return None


def try_claim_all(run_dirs: list[Path], what: str = "") -> list[Claim] | None:
    """Claim every folder or none (the ones taken are released again)."""
    claims = []
    for run_dir in run_dirs:
        claim = try_claim(run_dir, what)
        if claim is None:
            for taken in claims:
                taken.release()
            return None
        claims.append(claim)
    return claims


def break_claims(run_dirs: list[Path]) -> int:
    """Delete the claims on these run folders, whoever holds them (--break-locks); returns how many there were."""
    count = 0
    for run_dir in run_dirs:
        try:
            lock_path(run_dir).unlink()
            count += 1
        except FileNotFoundError:
            pass
    return count
