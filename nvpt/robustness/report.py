"""Robustness tables from raw accuracies: pure functions, no model code.

An evaluation set is named by `set_key`: "gaussian_noise@3" (corruption at a
severity) or "gaussian@0.1" (plain Gaussian noise at a sigma). Accuracies are
top-1 in percent. Means: per corruption, per family (noise, blur, weather, digital:
nvpt.robustness.corruptions.FAMILIES, ImageNet-C's extras in their family) and over
all corrupted sets (mCA).

    s = summarize(81.2, {"gaussian_noise@3": 60.1, "gaussian@0.1": 70.4}, reference=vpt_deep)
    write_json(s, "robustness.json"); write_csv(s, "robustness.csv"); print(markdown_table(s))
    print(side_by_side_markdown({"vpt_deep": vpt_deep, "spike_nvpt": s}))
    aggregate_seeds([80.1, 79.5, 80.8])   # mean, sample std, 95% Student-t interval
"""
from __future__ import annotations

import csv
import io
import json
import math
import numbers
import os
from pathlib import Path

from nvpt.config import CORRUPTIONS
from nvpt.errors import NVPTError
from nvpt.io import atomic_write_text
from nvpt.robustness.corruptions import FAMILIES, GAUSSIAN, check_set

SET_NAMES = CORRUPTIONS + (GAUSSIAN,)

# Two-sided 95% critical values of Student's t, t(0.975, df), df = 1..30.
_T975 = (12.7062047, 4.3026527, 3.1824463, 2.7764451, 2.5705818, 2.4469119, 2.3646243, 2.3060041,
         2.2621572, 2.2281389, 2.2009852, 2.1788128, 2.1603687, 2.1447867, 2.1314495, 2.1199053,
         2.1098155, 2.1009220, 2.0930241, 2.0859634, 2.0796138, 2.0738731, 2.0686576, 2.0638986,
         2.0595386, 2.0555294, 2.0518305, 2.0484071, 2.0452296, 2.0422725)
_Z975 = 1.959963984540054


# ----------------------------------------------------------------------------- set keys

def set_key(name: str, severity: int | None, sigma: float | None) -> str:
    """"gaussian_noise@3" for a severity, "gaussian@0.1" for a sigma (repr: exact round trip)."""
    check_set(name, severity, sigma)
    return f"{name}@{float(sigma)!r}" if name == GAUSSIAN else f"{name}@{int(severity)}"


def parse_set_key(key: str) -> tuple[str, int | None, float | None]:
    """Inverse of `set_key`: "gaussian_noise@3" -> ("gaussian_noise", 3, None)."""
    name, sep, level = str(key).rpartition("@")
    if not sep:
        raise NVPTError(f"bad set key {key!r}; expected <corruption>@<severity> or gaussian@<sigma>, "
                        f"corruption one of {', '.join(SET_NAMES)}")
    try:
        severity, sigma = (None, float(level)) if name == GAUSSIAN else (int(level), None)
    except ValueError:
        raise NVPTError(f"bad set key {key!r}: {level!r} is not a "
                        f"{'sigma' if name == GAUSSIAN else 'severity'}") from None
    check_set(name, severity, sigma)
    return name, severity, sigma


def set_order(key: str) -> tuple:
    """Sort key of a set key: corruption in table order, then severity or sigma."""
    name, severity, sigma = parse_set_key(key)
    return SET_NAMES.index(name), severity if sigma is None else sigma


# ----------------------------------------------------------------------------- summary

def _acc(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value <= 100:
        raise NVPTError(f"{what} must be a top-1 accuracy in percent (0..100), got {value!r}")
    return float(value)


def _mean(values: list[float]) -> float:
    return math.fsum(values) / len(values)


def _ratio(a: float | None, clean: float) -> float | None:
    return None if a is None or clean == 0 else a / clean


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def summarize(clean_acc: float, corrupted: dict[str, float], reference: dict | None = None) -> dict:
    """Accuracy table of one model. `corrupted` maps set keys to accuracies (%);
    `reference` is another summarize() output (e.g. VPT-deep) to diff against.

    Returns a JSON-ready dict:
      clean                 clean accuracy
      sets                  {key: {corruption, severity, sigma, accuracy, relative, diff_to_reference}}
      corruptions           {name: {accuracy (mean over its sets), n_sets, relative, diff_to_reference}}
      families              {family: {accuracy (mean over its sets), n_sets, corruptions, relative,
                            diff_to_reference}} for the families with sets (gaussian@sigma sets in none)
      mean_corrupted        mCA: mean over all corrupted sets (None without sets)
      relative_robustness   mean_corrupted / clean
      diff_to_reference     None, or {clean, mean_corrupted, relative_robustness} differences
    relative = accuracy / clean (None when clean is 0). A mean's difference to the
    reference is given only when the reference has exactly the same sets under that
    mean; otherwise it is None, since means over different sets do not compare.
    """
    clean = _acc(clean_acc, "clean accuracy")
    if not isinstance(corrupted, dict):
        raise NVPTError(f"corrupted accuracies must be a dict of set key -> accuracy, got {type(corrupted).__name__}")
    if reference is not None and not (isinstance(reference, dict) and {"clean", "sets", "corruptions"} <= reference.keys()):
        raise NVPTError("reference must be the output of summarize() for another model")
    ref_sets = reference["sets"] if reference else {}

    parsed = {}
    for key, value in corrupted.items():
        name, severity, sigma = parse_set_key(key)
        canon = set_key(name, severity, sigma)  # "gaussian@0.10" and "gaussian@0.1" are one set
        if canon in parsed:
            raise NVPTError(f"set {canon!r} is given twice (as {key!r} and another spelling)")
        parsed[canon] = (name, severity, sigma, _acc(value, f"accuracy of {key!r}"))

    sets = {}
    for key in sorted(parsed, key=set_order):
        name, severity, sigma, acc = parsed[key]
        sets[key] = {"corruption": name, "severity": severity, "sigma": sigma, "accuracy": acc,
                     "relative": _ratio(acc, clean),
                     "diff_to_reference": _diff(acc, ref_sets.get(key, {}).get("accuracy"))}

    corruptions = {}
    for name in SET_NAMES:
        keys = [k for k, row in sets.items() if row["corruption"] == name]
        if not keys:
            continue
        mean = _mean([sets[k]["accuracy"] for k in keys])
        ref_keys = {k for k, row in ref_sets.items() if row["corruption"] == name}
        ref_mean = reference["corruptions"][name]["accuracy"] if ref_keys == set(keys) else None
        corruptions[name] = {"accuracy": mean, "n_sets": len(keys), "relative": _ratio(mean, clean),
                             "diff_to_reference": _diff(mean, ref_mean)}

    families = {}
    for family, names in FAMILIES.items():
        keys = [k for k, row in sets.items() if row["corruption"] in names]
        if not keys:
            continue
        mean = _mean([sets[k]["accuracy"] for k in keys])
        ref_keys = [k for k, row in ref_sets.items() if row["corruption"] in names]
        ref_mean = _mean([ref_sets[k]["accuracy"] for k in ref_keys]) if set(ref_keys) == set(keys) else None
        families[family] = {"accuracy": mean, "n_sets": len(keys),
                            "corruptions": [n for n in names if n in corruptions],
                            "relative": _ratio(mean, clean), "diff_to_reference": _diff(mean, ref_mean)}

    mca = _mean([row["accuracy"] for row in sets.values()]) if sets else None
    summary = {"clean": clean, "sets": sets, "corruptions": corruptions, "families": families, "mean_corrupted": mca,
               "relative_robustness": _ratio(mca, clean), "diff_to_reference": None}
    if reference is not None:
        same = set(ref_sets) == set(sets)
        summary["diff_to_reference"] = {
            "clean": clean - reference["clean"],
            "mean_corrupted": _diff(mca, reference.get("mean_corrupted")) if same else None,
            "relative_robustness": _diff(summary["relative_robustness"],
                                         reference.get("relative_robustness")) if same else None,
        }
    return summary


def _rows(summary: dict) -> list[dict]:
    """Table rows: clean, then each corruption's sets followed by their mean
    ("mean:<name>"), then each family's mean ("family:<name>"), then "mean_corrupted"."""
    ref = summary["diff_to_reference"]
    rows = [{"set": "clean", "corruption": "", "severity_or_sigma": "", "accuracy": summary["clean"],
             "relative": _ratio(summary["clean"], summary["clean"]), "diff_to_reference": ref["clean"] if ref else None}]
    for name, agg in summary["corruptions"].items():
        for key, row in summary["sets"].items():
            if row["corruption"] == name:
                level = row["severity"] if row["sigma"] is None else row["sigma"]
                rows.append({"set": key, "corruption": name, "severity_or_sigma": level,
                             **{k: row[k] for k in ("accuracy", "relative", "diff_to_reference")}})
        rows.append({"set": f"mean:{name}", "corruption": name, "severity_or_sigma": "",
                     **{k: agg[k] for k in ("accuracy", "relative", "diff_to_reference")}})
    for family, agg in summary.get("families", {}).items():
        rows.append({"set": f"family:{family}", "corruption": "", "severity_or_sigma": "",
                     **{k: agg[k] for k in ("accuracy", "relative", "diff_to_reference")}})
    if summary["sets"]:
        rows.append({"set": "mean_corrupted", "corruption": "", "severity_or_sigma": "",
                     "accuracy": summary["mean_corrupted"], "relative": summary["relative_robustness"],
                     "diff_to_reference": ref["mean_corrupted"] if ref else None})
    return rows


# ----------------------------------------------------------------------------- writers

def write_json(summary: dict, path: str | os.PathLike) -> Path:
    """Write a summary (or any JSON-ready dict) as indented JSON."""
    return atomic_write_text(path, json.dumps(summary, indent=2, allow_nan=False) + "\n")


CSV_COLUMNS = ("set", "corruption", "severity_or_sigma", "accuracy", "relative", "diff_to_reference")


def write_csv(summary: dict, path: str | os.PathLike) -> Path:
    """One row per set (columns CSV_COLUMNS), plus the clean row first, a "mean:<name>"
    row after each corruption's sets, a "family:<name>" row per family and "mean_corrupted"
    last; empty cell = not defined."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in _rows(summary):
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return atomic_write_text(path, buf.getvalue())


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def markdown_table(summary: dict) -> str:
    """Rows: clean, each set, per-corruption means, per-family means, mean corrupted (mCA). Columns:
    accuracy (%), relative (accuracy / clean), and Δ ref (points) when a reference was given."""
    with_ref = summary["diff_to_reference"] is not None
    head = ["set", "accuracy", "relative"] + (["Δ ref"] if with_ref else [])
    lines = ["| " + " | ".join(head) + " |", "|---" + "|---:" * (len(head) - 1) + "|"]
    for row in _rows(summary):
        cells = [row["set"], _fmt(row["accuracy"], ".2f"), _fmt(row["relative"], ".3f")]
        if with_ref:
            cells.append(_fmt(row["diff_to_reference"], "+.2f"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def side_by_side_markdown(summaries: dict[str, dict]) -> str:
    """Accuracy (%) of several methods next to each other: columns = methods, rows =
    clean, every set any method has, family means, mean corrupted. The best value per row is bold;
    n/a where a method lacks the set. Mean corrupted is each method's own mCA, so it
    compares methods only when they were evaluated on the same sets."""
    if not summaries:
        raise NVPTError("side_by_side_markdown needs at least one summary")
    keys = sorted({k for s in summaries.values() for k in s["sets"]}, key=set_order)
    rows = [("clean", [s["clean"] for s in summaries.values()])]
    rows += [(k, [s["sets"][k]["accuracy"] if k in s["sets"] else None for s in summaries.values()]) for k in keys]
    for family in FAMILIES:
        values = [s.get("families", {}).get(family, {}).get("accuracy") for s in summaries.values()]
        if any(v is not None for v in values):
            rows.append((f"family:{family}", values))
    rows.append(("mean corrupted (mCA)", [s["mean_corrupted"] for s in summaries.values()]))
    lines = ["| set | " + " | ".join(summaries) + " |", "|---" + "|---:" * len(summaries) + "|"]
    for label, values in rows:
        present = [v for v in values if v is not None]
        best = max(present) if len(present) > 1 else None
        cells = [f"**{v:.2f}**" if v is not None and v == best else _fmt(v, ".2f") for v in values]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- seeds

def t_critical_95(df: int) -> float:
    """Two-sided 95% critical value t(0.975, df) of Student's t: a table for df 1..30,
    beyond that the Cornish-Fisher expansion around the normal quantile
    (Abramowitz & Stegun 26.7.5; error < 1e-7 for df > 30)."""
    if isinstance(df, bool) or not isinstance(df, numbers.Integral) or df < 1:
        raise NVPTError(f"degrees of freedom must be a positive integer, got {df!r}")
    if df <= len(_T975):
        return _T975[df - 1]
    z = _Z975
    g = ((z**3 + z) / 4,
         (5 * z**5 + 16 * z**3 + 3 * z) / 96,
         (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384,
         (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160)
    return z + sum(gk / df ** (k + 1) for k, gk in enumerate(g))


def _finite(values, who: str) -> list[float]:
    vals = list(values)
    for v in vals:
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
            raise NVPTError(f"{who} needs finite numbers, got {v!r}")
    return [float(v) for v in vals]


def aggregate_seeds(values: list[float]) -> dict:
    """Mean over seeds with sample std (ddof=1) and the 95% Student-t interval
    mean ± t(0.975, n-1) * std / sqrt(n). With one value std and the interval are None."""
    vals = _finite(values, "aggregate_seeds")
    if not vals:
        raise NVPTError("aggregate_seeds needs at least one value")
    n, mean = len(vals), _mean(vals)
    if n == 1:
        return {"mean": mean, "std": None, "n": 1, "ci95_low": None, "ci95_high": None}
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in vals) / (n - 1))
    half = t_critical_95(n - 1) * std / math.sqrt(n)
    return {"mean": mean, "std": std, "n": n, "ci95_low": mean - half, "ci95_high": mean + half}


def paired_gain(a: list[float], b: list[float]) -> dict:
    """aggregate_seeds of a[i] - b[i]: the gain of method a over b, paired by seed
    (both lists in the same seed order). Its interval is the paired-t interval."""
    a, b = _finite(a, "paired_gain"), _finite(b, "paired_gain")
    if len(a) != len(b):
        raise NVPTError(f"paired_gain needs one value per seed for both methods, got {len(a)} and {len(b)}")
    return aggregate_seeds([x - y for x, y in zip(a, b)])
