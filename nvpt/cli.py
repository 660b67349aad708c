"""Shared command-line plumbing: one-line errors, --debug, logging, sys.path for tools/."""
from __future__ import annotations

import argparse
import logging
import math
import os
import sys
from typing import Callable, Sequence

from nvpt.errors import NVPTError, one_line


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's own usage errors: one line, exit 2
        raise NVPTError(f"{message} (see {self.prog} --help)")


def parser(description: str, prog: str | None = None) -> argparse.ArgumentParser:
    p = _ArgumentParser(description=description, prog=prog)
    p.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    return p


def finite_float(text: str) -> float:
    """argparse type of a numeric flag: a float that is not NaN or infinite."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid float value: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def _one_line(exc: BaseException) -> str:
    """The message on one line. A DataLoader worker re-raises our error with its traceback in the
    message ("Caught NVPTError in DataLoader worker process 0. ... nvpt.errors.NVPTError: <message>")."""
    text = str(exc).strip()
    if "Original Traceback" in text:
        text = text.splitlines()[-1].partition(": ")[2] or text
    return one_line(text)


def run_main(main: Callable[[Sequence[str]], int | None], argv: Sequence[str] | None = None) -> int:
    """Call main(argv); an NVPTError (or any error without --debug) becomes one line on stderr."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("NVPT_DEBUG") == "1"
    # our own INFO messages only: SpikingJelly logs missing optional backends to the root logger
    log = logging.getLogger("nvpt")
    if not log.handlers:
        handler = logging.StreamHandler(sys.stdout)  # progress, like run_training's lines; stderr: errors
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
    try:
        return int(main(argv) or 0)
    except NVPTError as exc:
        if debug:
            raise
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:  # the file system refused: a path through a file, permissions, a full disk
        if debug:
            raise
        where = f": {exc.filename}" if exc.filename else ""
        print(f"error: {exc.strerror or _one_line(exc)}{where} (check the paths and the free space)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: keep it one line for users, --debug shows where
        if debug:
            raise
        print(f"error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} "
              "(unexpected; rerun with --debug for the traceback)", file=sys.stderr)
        return 1
