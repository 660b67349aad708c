"""Where a tool may write, checked before its work starts: never over a file of a run that other tools
read, never over one of its own inputs, and only where the file system lets it.

    check_output(args.out, inputs=[checkpoint])                      # one file a tool will write
    check_output_folder(args.out, ("robustness.json", "robustness.csv"))  # a folder and the files it will hold

Both create nothing (a probe file is made and removed at once) and raise NVPTError in one line.
A run folder is one that holds config.yaml or a checkpoint; its RUN_FILES belong to training
(tools/train.py, nvpt.pipeline) alone.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from nvpt.errors import NVPTError

LAST = "checkpoint-last.safetensors"  # resumable: model, optimizer, schedule, RNG, history
BEST = "checkpoint-best.safetensors"  # best validation accuracy: model only
CONFIG = "config.yaml"
RESULTS = "results.json"  # written last: marks the run complete
RUN_FILES = (LAST, BEST, CONFIG, "metrics.jsonl", RESULTS)


def is_run_folder(folder: Path) -> bool:
    return any((Path(folder) / name).is_file() for name in (CONFIG, LAST, BEST))


def check_output(path: str | os.PathLike, inputs: Iterable = (), what: str = "output") -> Path:
    """Refuse a file path that is a run's file (RUN_FILES in a run folder), one of `inputs`, a folder,
    or in a place that cannot be written; return it as a Path."""
    path = Path(path)
    target = path.resolve()
    if target.name in RUN_FILES and is_run_folder(target.parent):
        raise NVPTError(f"{what} {path} would overwrite {target.name} of the run in {target.parent}, which training "
                        "and the other tools read; write it to another file")
    for source in inputs:
        if source is not None and Path(source).exists() and Path(source).resolve() == target:
            raise NVPTError(f"{what} {path} is also an input of this command; write it to another file")
    if target.is_dir():
        raise NVPTError(f"{what} {path} is a folder; pass a file path")
    check_writable(target.parent, path, what)
    return path


def check_output_folder(folder: str | os.PathLike, names: Iterable[str] = (), inputs: Iterable = (),
                        what: str = "--out") -> Path:
    """check_output for each file `names` will put in `folder`; the folder itself must be (or become) a
    writable folder. Returns it as a Path."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise NVPTError(f"{what} {folder} is a file; pass a folder")
    inputs = list(inputs)
    for name in names:
        check_output(folder / name, inputs, what)
    check_writable(folder.resolve(), folder, what)
    return folder


def check_writable(folder: Path, shown: Path, what: str) -> None:
    """The nearest existing folder on the way to `folder` accepts a new file (a probe made and removed)."""
    probe = Path(folder)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise NVPTError(f"{what} {shown}: {probe} is a file, not a folder; choose another path")
    try:
        fd, tmp = tempfile.mkstemp(prefix=".nvpt-write-check-", dir=probe)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise NVPTError(f"{what} {shown}: cannot write in {probe} ({exc.strerror or exc}); choose a writable "
                        "folder") from None
