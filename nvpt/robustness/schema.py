"""Reading the JSON files that tools hand to each other, checked against the shape their readers use.

    summary = read_summary(run_dir / "results.json", fix="delete it and rerun")   # results.json / robustness.json
    comp = read_comparison(path, fix="rerun tools/compare.py")                     # comparison.json

A file that is not valid JSON, holds NaN or Infinity, or lacks a key or holds a value of the
wrong type raises NVPTError in one line naming the file, the key and the fix, before anything
reads it further.
"""
from __future__ import annotations

import json
import math
import numbers
from pathlib import Path

from nvpt.errors import NVPTError, one_line
from nvpt.robustness.report import parse_set_key

CLEAN, MEAN = "clean", "mean_corrupted"
STAT_KEYS = ("mean", "std", "ci95_low", "ci95_high")


def _refuse(constant: str):
    raise ValueError(f"{constant} is not valid JSON")


def read_json(path: str | Path, fix: str):
    """The parsed JSON of a file (strict: no NaN or Infinity); NVPTError naming the file and the fix."""
    path = Path(path)
    try:
        return json.loads(path.read_text(), parse_constant=_refuse)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).splitlines()[0]
        raise NVPTError(f"cannot read {path}: {one_line(reason)}; {fix}") from None


def _bad(path, key: str, wanted: str, value, fix: str) -> NVPTError:
    shown = one_line(repr(value))
    return NVPTError(f"{path}: {key} must be {wanted}, got {shown[:60] + '...' if len(shown) > 60 else shown}; {fix}")


def _number(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, numbers.Real) and math.isfinite(value)


def _accuracy(data: dict, key: str, path, where: str, fix: str) -> float:
    value = data.get(key)
    if not _number(value) or not 0 <= value <= 100:
        raise _bad(path, f"{where}{key}", "a top-1 accuracy in percent (0..100)", value, fix)
    return value


def _mapping(data: dict, key: str, path, where: str, fix: str) -> dict:
    value = data.get(key)
    if not isinstance(value, dict):
        raise _bad(path, f"{where}{key}", "a JSON object", value, fix)
    return value


def check_summary(data, path, fix: str) -> dict:
    """A results.json / robustness.json summary (nvpt.robustness.report.summarize) as its readers use it."""
    if not isinstance(data, dict) or not {CLEAN, "sets", "corruptions", MEAN} <= data.keys():
        raise NVPTError(f"{path} is not a results.json/robustness.json summary (needs clean, sets, corruptions, "
                        f"mean_corrupted); {fix}")
    _accuracy(data, CLEAN, path, "", fix)
    sets = _mapping(data, "sets", path, "", fix)
    corruptions = _mapping(data, "corruptions", path, "", fix)
    for key, row in sets.items():
        try:
            name = parse_set_key(key)[0]
        except NVPTError as exc:
            raise NVPTError(f"{path}: sets: {exc}; {fix}") from None
        if not isinstance(row, dict):
            raise _bad(path, f"sets.{key}", "a JSON object", row, fix)
        _accuracy(row, "accuracy", path, f"sets.{key}.", fix)
        if row.get("corruption") != name:
            raise _bad(path, f"sets.{key}.corruption", repr(name), row.get("corruption"), fix)
        entry = corruptions.get(name)
        if not isinstance(entry, dict):
            raise _bad(path, f"corruptions.{name}", "a JSON object (the mean over its sets)", entry, fix)
        _accuracy(entry, "accuracy", path, f"corruptions.{name}.", fix)
    if sets:
        _accuracy(data, MEAN, path, "", fix)
    elif data[MEAN] is not None:
        raise _bad(path, MEAN, "null without corrupted sets", data[MEAN], fix)
    for family, entry in (data.get("families") or {}).items():
        if not isinstance(entry, dict):
            raise _bad(path, f"families.{family}", "a JSON object", entry, fix)
        _accuracy(entry, "accuracy", path, f"families.{family}.", fix)
    if "seed" in data and (isinstance(data["seed"], bool) or not isinstance(data["seed"], int)):
        raise _bad(path, "seed", "an integer", data["seed"], fix)
    return data


def read_summary(path: str | Path, fix: str) -> dict:
    return check_summary(read_json(path, fix), path, fix)


def _check_stat(stat, path, key: str, fix: str) -> None:
    """aggregate_seeds / paired_gain output: a finite mean; std and the CI bounds finite or null (one seed)."""
    if not isinstance(stat, dict):
        raise _bad(path, key, "an object with mean, std, ci95_low, ci95_high", stat, fix)
    if not _number(stat.get("mean")):
        raise _bad(path, f"{key}.mean", "a finite number", stat.get("mean"), fix)
    spread = [stat.get(k) for k in STAT_KEYS[1:]]
    if not (all(v is None for v in spread) or all(_number(v) for v in spread)):
        raise _bad(path, f"{key}.std/ci95_low/ci95_high", "finite numbers (or all null for one seed)", spread, fix)


def check_comparison(data, path, fix: str) -> dict:
    """A comparison.json (nvpt.robustness.compare.compare_runs, written by tools/compare.py)."""
    if not isinstance(data, dict) or not {"methods", "reference", "seeds", "sets", "accuracy", "gain"} <= data.keys():
        hint = " (it looks like one run's results.json)" if isinstance(data, dict) and CLEAN in data else ""
        raise NVPTError(f"{path} is not a comparison.json of tools/compare.py (needs methods, reference, seeds, sets, "
                        f"accuracy, gain){hint}; {fix}")
    methods, sets = data["methods"], data["sets"]
    if not (isinstance(methods, list) and methods and all(isinstance(m, str) for m in methods)):
        raise _bad(path, "methods", "a non-empty list of method names", methods, fix)
    if data["reference"] not in methods:
        raise _bad(path, "reference", f"one of methods ({', '.join(methods)})", data["reference"], fix)
    seeds = data["seeds"]
    if not (isinstance(seeds, list) and seeds and all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)):
        raise _bad(path, "seeds", "a non-empty list of integers", seeds, fix)
    if not (isinstance(sets, list) and CLEAN in sets and all(isinstance(s, str) for s in sets)):
        raise _bad(path, "sets", "a list of set names that holds 'clean'", sets, fix)
    for table, who in (("accuracy", methods), ("gain", [m for m in methods if m != data["reference"]])):
        if not isinstance(data[table], dict):
            raise _bad(path, table, "a JSON object", data[table], fix)
        for method in who:
            per_set = data[table].get(method)
            if not isinstance(per_set, dict):
                raise _bad(path, f"{table}.{method}", "a JSON object of set -> statistics", per_set, fix)
            for key in sets:
                _check_stat(per_set.get(key), path, f"{table}.{method}.{key}", fix)
    return data


def read_comparison(path: str | Path, fix: str) -> dict:
    return check_comparison(read_json(path, fix), path, fix)
