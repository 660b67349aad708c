"""Cross-task tables in the field's format (VPT, NOAH, SSF, ...): markdown, csv and a figure.

    write_tables(comps, selections, methods, "vpt_deep", out / "benchmark")
        -> benchmark.md, benchmark.csv, benchmark.png/.pdf

comps: task -> nvpt.comparison output (compare_runs' dict); selections: task -> method -> the grid
choice (base_lr, weight_decay, val). Per method and task: top-1 (%), mean over seeds, clean and
under corruption (mCA, the mean over the corrupted sets). VTAB-1k's group means (Natural,
Specialized, Structured) average their tasks; the VTAB-1k mean averages the three group means (as
NOAH, SSF and FacT report it); the FGVC mean averages the 5 data sets. The gain table pairs each
method with the reference seed by seed: a summary column's value is computed per seed first, then
nvpt.robustness.report.paired_gain gives its mean and 95 % CI.
"""
from __future__ import annotations

import csv
import datetime
import io
import math
from pathlib import Path

from nvpt.engine.checkpoint import atomic_write_text
from nvpt.errors import NVPTError
from nvpt.robustness.compare import MEAN, _save, excludes_zero
from nvpt.robustness.report import aggregate_seeds, paired_gain
from nvpt.suites import GROUPS, group_of

METRICS = {"clean": "clean", MEAN: "mCA"}
VTAB_MEAN, FGVC_MEAN = "VTAB-1k mean", "FGVC mean"


def _columns(tasks: list[str]) -> list[tuple[str, list[str]]]:
    """(column, the tasks it averages) in table order: every task, then the group means and overall means."""
    vtab = [t for t in tasks if group_of(t) in GROUPS]
    fgvc = [t for t in tasks if group_of(t) == "FGVC"]
    other = [t for t in tasks if group_of(t) is None]
    cols = [(t, [t]) for t in vtab]
    groups = [(g, [t for t in vtab if group_of(t) == g]) for g in GROUPS]
    cols += [(g, members) for g, members in groups if members]
    if vtab:
        cols.append((VTAB_MEAN, vtab))
    cols += [(t, [t]) for t in fgvc]
    if fgvc:
        cols.append((FGVC_MEAN, fgvc))
    return cols + [(t, [t]) for t in other]


def _summary(column: str) -> bool:
    return column in GROUPS or column in (VTAB_MEAN, FGVC_MEAN)


def _per_seed(comps: dict, column: str, members: list[str], method: str, key: str) -> list[float] | None:
    """A column's value per seed for one method: a task's accuracy, a group's mean over its tasks, the VTAB-1k
    mean over the group means; None when a task lacks the method or the metric."""
    if column == VTAB_MEAN:
        groups = [[t for t in members if group_of(t) == g] for g in GROUPS]
        parts = [_per_seed(comps, "group", g, method, key) for g in groups if g]
    else:
        parts = []
        for task in members:
            acc = comps[task]["accuracy"].get(method, {}).get(key)
            if acc is None:
                return None
            parts.append(acc["values"])
    if any(p is None for p in parts):
        return None
    return [math.fsum(v) / len(v) for v in zip(*parts)]


def _check_seeds(comps: dict) -> list[int]:
    seeds = {tuple(c["seeds"]) for c in comps.values()}
    if len(seeds) != 1:
        raise NVPTError(f"the tasks were run with different seeds ({sorted(seeds)}); rerun them with the same --seeds")
    return list(next(iter(seeds)))


def table_data(comps: dict[str, dict], methods: list[str], reference: str) -> dict:
    """{columns, seeds, accuracy[metric][method][column] (aggregate or None), gain[metric][method][column]}."""
    if not comps:
        raise NVPTError("no finished task to tabulate")
    seeds = _check_seeds(comps)
    columns = _columns(list(comps))
    accuracy, gain = {}, {}
    for key in METRICS:
        accuracy[key], gain[key] = {}, {}
        for m in methods:
            accuracy[key][m], gain[key][m] = {}, {}
            for column, members in columns:
                values = _per_seed(comps, column, members, m, key)
                ref = _per_seed(comps, column, members, reference, key)
                accuracy[key][m][column] = aggregate_seeds(values) if values else None
                gain[key][m][column] = paired_gain(values, ref) if values and ref and m != reference else None
    return {"columns": [c for c, _ in columns], "seeds": seeds, "accuracy": accuracy, "gain": gain}


def _gain(stat: dict | None) -> str:
    if stat is None:
        return "n/a"
    text = f"{stat['mean']:+.2f}"
    if stat["ci95_low"] is not None:
        text += f" [{stat['ci95_low']:+.2f}, {stat['ci95_high']:+.2f}]"
    return f"**{text}**" if excludes_zero(stat) else text


def _label(column: str) -> str:
    return f"**{column}**" if _summary(column) else column


def tables_markdown(data: dict, selections: dict[str, dict], methods: list[str], reference: str) -> str:
    cols = data["columns"]
    n = len(data["seeds"])
    lines = []
    for key, name in METRICS.items():
        what = "clean test images" if key == "clean" else "the corrupted test sets (mCA: mean over the sets)"
        lines += [f"## Top-1 accuracy (%) on {what}, mean over {n} seed{'s' * (n != 1)}", "",
                  "| method | " + " | ".join(map(_label, cols)) + " |", "|---" + "|---:" * len(cols) + "|"]
        for m in methods:
            cells = [f"{s['mean']:.1f}" if s else "n/a" for s in (data["accuracy"][key][m][c] for c in cols)]
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
        lines.append("")
    summary = [c for c in cols if _summary(c)] or cols
    others = [m for m in methods if m != reference]
    if others:
        lines += [f"## Gain over {reference} (points), paired by seed: mean [95% CI], **bold** where the CI excludes 0",
                  "", "| method | metric | " + " | ".join(summary) + " |", "|---|---" + "|---:" * len(summary) + "|"]
        for m in others:
            for key, name in METRICS.items():
                lines.append(f"| {m} | {name} | " + " | ".join(_gain(data["gain"][key][m][c]) for c in summary) + " |")
        lines.append("")
    tasks = [c for c in cols if not _summary(c)]
    lines += ["## Hyper-parameters chosen on the validation split: base_lr / weight_decay (val top-1 %)", "",
              "| task | " + " | ".join(methods) + " |", "|---" + "|---:" * len(methods) + "|"]
    for task in tasks:
        cells = []
        for m in methods:
            c = selections.get(task, {}).get(m)
            cells.append(f"{c['base_lr']:g} / {c['weight_decay']:g} ({c['val']:.1f})" if c else "n/a")
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def tables_csv(data: dict, selections: dict[str, dict], methods: list[str]) -> str:
    """One row per column (task or mean), method and metric."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["column", "group", "method", "metric", "mean", "std", "ci95_low", "ci95_high", "gain",
                     "gain_ci95_low", "gain_ci95_high", "base_lr", "weight_decay", "val"])
    for column in data["columns"]:
        for m in methods:
            chosen = selections.get(column, {}).get(m) or {}
            for key, name in METRICS.items():
                acc, gain = data["accuracy"][key][m][column], data["gain"][key][m][column]
                if acc is None:
                    continue
                writer.writerow([column, "" if _summary(column) else (group_of(column) or ""), m, name,
                                 *(acc[k] if acc[k] is not None else "" for k in ("mean", "std", "ci95_low", "ci95_high")),
                                 *((gain[k] if gain[k] is not None else "") if gain else ""
                                   for k in ("mean", "ci95_low", "ci95_high")),
                                 chosen.get("base_lr", ""), chosen.get("weight_decay", ""), chosen.get("val", "")])
    return buffer.getvalue()


def plot_tables(data: dict, methods: list[str], base: Path) -> list[Path]:
    """Grouped bars of the summary columns (group and overall means; every task without them), clean and mCA,
    one bar per method with its 95 % CI."""
    from matplotlib.figure import Figure

    cols = [c for c in data["columns"] if _summary(c)] or data["columns"]
    fig = Figure(figsize=(max(6.0, 1.3 * len(cols) * max(1, len(methods)) / 2), 7.0))
    axes = fig.subplots(2, 1, squeeze=False)[:, 0]
    width = 0.8 / max(1, len(methods))
    for ax, (key, name) in zip(axes, METRICS.items()):
        for i, m in enumerate(methods):
            stats = [data["accuracy"][key][m][c] for c in cols]
            xs = [j + (i - (len(methods) - 1) / 2) * width for j in range(len(cols))]
            means = [s["mean"] if s else math.nan for s in stats]
            # a t-interval over few seeds can pass 0 or 100: the bars show only what accuracy can be
            errors = [[(s["mean"] - max(s["ci95_low"], 0.0)) if s and s["ci95_low"] is not None else 0 for s in stats],
                      [(min(s["ci95_high"], 100.0) - s["mean"]) if s and s["ci95_high"] is not None else 0 for s in stats]]
            ax.bar(xs, means, width, yerr=errors, capsize=2, label=m)
        ax.set_xticks(range(len(cols)), cols, rotation=20, ha="right")
        ax.set_ylabel(f"top-1 (%), {name}")
        ax.set_ylim(0, 100)
        ax.grid(axis="y", alpha=0.3)
    n = len(data["seeds"])
    axes[0].legend(title=f"mean, 95% CI ({n} seed{'s' * (n != 1)})", fontsize="small")
    fig.tight_layout()
    return _save(fig, base)


def write_tables(comps: dict[str, dict], selections: dict[str, dict], methods: list[str], reference: str,
                 base: Path, overrides: list[str] = ()) -> list[Path]:
    """<base>.md, <base>.csv and <base>.png/.pdf; returns the paths, the markdown first."""
    data = table_data(comps, methods, reference)
    base = Path(base)
    head = [f"# The benchmark: {', '.join(methods)} ({len(comps)} tasks)", "",
            f"Written by `python tools/reproduce_paper.py --benchmark` on {datetime.date.today().isoformat()}"
            + (f" with {' '.join(overrides)}" if overrides else "") + ". Per task and method base_lr and "
            "weight_decay were chosen on the validation split (train800 / val200; FGVC: train.json / val.json), "
            f"then seeds {', '.join(map(str, data['seeds']))} trained with them (train800val200; FGVC: train.json) and "
            "were tested once. Per-task tables with every set: `compare-<task>/comparison.md`.", ""]
    md, table_csv = base.with_suffix(".md"), base.with_suffix(".csv")
    atomic_write_text(md, "\n".join(head) + "\n" + tables_markdown(data, selections, methods, reference))
    atomic_write_text(table_csv, tables_csv(data, selections, methods))
    return [md, table_csv, *plot_tables(data, methods, base)]
