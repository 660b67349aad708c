"""Compare methods over training seeds: pure functions on results.json dicts (no training, no model).

    runs = {"spike_nvpt": [res_s0, res_s1, res_s2], "vpt_deep": [res_s0, res_s1, res_s2]}
    comp = compare_runs(runs, reference="vpt_deep")
    print(family_markdown(comp)); print(comparison_markdown(comp))
    plot_comparison(comp, "out/comparison")  # per family: .png + .pdf; per corruption: _corruptions.png + .pdf

Each result is a `summarize()` output with a "seed" (as tools/train.py writes results.json).
Per evaluation set (clean, every corrupted set, every family's mean, mean corrupted) a method
gets `aggregate_seeds` over its seeds, and every other method the `paired_gain` over the
reference, paired by seed. Family means ("family:noise", ...) are computed per seed from the
sets, as summarize() does.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

from nvpt.errors import NVPTError
from nvpt.robustness.corruptions import FAMILIES, GAUSSIAN, check_versions
from nvpt.robustness.report import SET_NAMES, aggregate_seeds, paired_gain, parse_set_key, set_order

CLEAN, MEAN = "clean", "mean_corrupted"
FAMILY = "family:"  # prefix of the family-mean keys: "family:noise", ...
_COLUMNS = 5  # plot panels per row
def _is_set(key: str) -> bool:
    return key not in (CLEAN, MEAN) and not key.startswith(FAMILY)


def set_accuracies(result: dict, who: str = "result") -> dict[str, float]:
    """{"clean", <set key> in table order..., "family:<name>" per family with sets,
    "mean_corrupted" (when there are sets)} -> accuracy (%)."""
    if not isinstance(result, dict) or not {"clean", "sets", "mean_corrupted"} <= result.keys():
        raise NVPTError(f"{who} is not a results.json summary (needs clean, sets, mean_corrupted)")
    out = {CLEAN: result["clean"]}
    keys = sorted(result["sets"], key=set_order)
    for key in keys:
        out[key] = result["sets"][key]["accuracy"]
    for family, names in FAMILIES.items():
        accs = [out[key] for key in keys if parse_set_key(key)[0] in names]
        if accs:
            out[FAMILY + family] = math.fsum(accs) / len(accs)
    if result["sets"]:
        out[MEAN] = result["mean_corrupted"]
    return out


def compare_runs(results: dict[str, list[dict]], reference: str = "vpt_deep") -> dict:
    """Aggregate each method's results over seeds and pair them with the reference method's.

    results: method -> list of results.json dicts, one per seed ("seed" field; list position
    when absent). Every method needs the same seeds and every result the same evaluation sets.
    Returns a JSON-ready dict:
      methods, reference, seeds, sets      (sets: "clean", set keys, "family:<name>", "mean_corrupted")
      accuracy[method][set]   aggregate_seeds(...) + "values" (per seed, in `seeds` order)
      gain[method][set]       paired_gain(method, reference) + "values"; reference not included
    """
    if not results:
        raise NVPTError("compare_runs needs the results of at least one method")
    if reference not in results:
        raise NVPTError(f"reference method {reference!r} has no results; methods: {', '.join(results)}")
    version = check_versions({f"{method} seed {run.get('seed', i) if isinstance(run, dict) else i}": run
                              for method, runs in results.items() for i, run in enumerate(runs or [])})
    by_seed: dict[str, dict[int, dict[str, float]]] = {}
    for method, runs in results.items():
        if not runs:
            raise NVPTError(f"method {method!r} has no results")
        seeds: dict[int, dict[str, float]] = {}
        for i, run in enumerate(runs):
            seed = run.get("seed", i) if isinstance(run, dict) else i
            if seed in seeds:
                raise NVPTError(f"method {method!r} has two results for seed {seed}")
            seeds[seed] = set_accuracies(run, f"result {i} of {method!r}")
        by_seed[method] = seeds

    seeds = sorted(by_seed[reference])
    sets = list(next(iter(by_seed[reference].values())))
    for method, runs in by_seed.items():
        if sorted(runs) != seeds:
            raise NVPTError(f"methods need the same seeds to be paired: {method!r} has {sorted(runs)}, "
                            f"{reference!r} has {seeds}")
        for seed, accs in runs.items():
            if list(accs) != sets:
                extra = sorted(set(accs) ^ set(sets))[:4]
                raise NVPTError(f"{method!r} seed {seed} was evaluated on other sets than {reference!r} "
                                f"(differ: {', '.join(extra) or 'order'}); evaluate all runs with the same eval.* config")

    def column(method: str, key: str) -> list[float]:
        return [by_seed[method][s][key] for s in seeds]

    accuracy = {m: {k: {**aggregate_seeds(column(m, k)), "values": column(m, k)} for k in sets} for m in results}
    gain = {}
    for m in results:
        if m != reference:
            gain[m] = {}
            for k in sets:
                diffs = [a - b for a, b in zip(column(m, k), column(reference, k))]
                gain[m][k] = {**paired_gain(column(m, k), column(reference, k)), "values": diffs}
    out = {"methods": list(results), "reference": reference, "seeds": seeds, "sets": sets,
           "accuracy": accuracy, "gain": gain}
    if version is not None:
        out["corruption_version"] = version  # of every run's noisy images (results without sets: none)
    return out


# ----------------------------------------------------------------------------- table

def _label(key: str) -> str:
    if key.startswith(FAMILY):
        return f"{key[len(FAMILY):]} (family mean)"
    return "mean corrupted (mCA)" if key == MEAN else key


def _cell(stat: dict, signed: bool = False) -> str:
    """"80.12 ± 0.53 [79.46, 80.78]"; only the mean with one seed."""
    f = "+.2f" if signed else ".2f"
    text = format(stat["mean"], f)
    if stat["std"] is not None:
        text += f" ± {stat['std']:.2f} [{stat['ci95_low']:{f}}, {stat['ci95_high']:{f}}]"
    return text


def excludes_zero(stat: dict) -> bool:
    """Whether a paired gain's 95% CI lies wholly above or below 0 (never with one seed)."""
    return stat["ci95_low"] is not None and (stat["ci95_low"] > 0 or stat["ci95_high"] < 0)


def _gain_cell(stat: dict) -> str:
    """A paired gain's cell, bold where its 95% CI excludes 0."""
    text = _cell(stat, True)
    return f"**{text}**" if excludes_zero(stat) else text


def summary_markdown(comp: dict) -> str:
    """One row per method: clean accuracy, mean corrupted accuracy (mCA) and their paired gains
    over the reference, plus the set where the mean gain is largest (the paper's "up to" number)."""
    ref = comp["reference"]
    corrupted = [k for k in comp["sets"] if _is_set(k)]
    lines = [f"Summary over {len(comp['seeds'])} seeds: mean ± std [95% CI]; gains over {ref} paired by seed, "
             "**bold** where the 95% CI excludes 0", "",
             f"| method | clean | mCA | clean − {ref} | mCA − {ref} | largest mean gain (set) |",
             "|---|---:|---:|---:|---:|---:|"]
    for m in comp["methods"]:
        acc = comp["accuracy"][m]
        row = [m, _cell(acc["clean"]), _cell(acc[MEAN]) if MEAN in acc else "n/a"]
        if m == ref:
            row += ["—", "—", "—"]
        else:
            gains = comp["gain"][m]
            for key in ("clean", MEAN):
                if key in gains:
                    row.append(_gain_cell(gains[key]))
                else:
                    row.append("n/a")
            best = max(corrupted, key=lambda k: gains[k]["mean"], default=None)
            row.append(f"{gains[best]['mean']:+.2f} ({best})" if best else "n/a")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def family_markdown(comp: dict) -> str:
    """One row per method: clean accuracy, each family's mean and mCA; then, per other method,
    a row of its paired gains over the reference (bold where the 95% CI excludes 0)."""
    ref = comp["reference"]
    keys = [CLEAN] + [k for k in comp["sets"] if k.startswith(FAMILY)] + ([MEAN] if MEAN in comp["sets"] else [])
    names = {CLEAN: "clean", MEAN: "mCA"}
    head = [names.get(k, k[len(FAMILY):]) for k in keys]
    n = len(comp["seeds"])
    lines = [f"Mean accuracy per corruption family (%): mean ± std [95% CI] over {n} seed{'s' * (n != 1)}; "
             f"gains over {ref} paired by seed, **bold** where the 95% CI excludes 0", "",
             "| method | " + " | ".join(head) + " |", "|---" + "|---:" * len(keys) + "|"]
    for m in comp["methods"]:
        lines.append(f"| {m} | " + " | ".join(_cell(comp["accuracy"][m][k]) for k in keys) + " |")
    for m in comp["methods"]:
        if m != ref:
            cells = [_gain_cell(comp["gain"][m][k]) for k in keys]
            lines.append(f"| {m} − {ref} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def comparison_markdown(comp: dict) -> str:
    """Two markdown tables: accuracy per method, then the gain over the reference.

    Cells: mean ± sample std [95% Student-t CI] over the seeds; a gain whose CI excludes 0 is bold."""
    n, ref, methods = len(comp["seeds"]), comp["reference"], comp["methods"]
    seeds = ", ".join(map(str, comp["seeds"]))
    caption = (f"Top-1 accuracy (%): mean ± std [95% CI] over {n} seeds ({seeds})" if n > 1
               else f"Top-1 accuracy (%) of seed {seeds} (one seed: no std or CI)")
    lines = [caption, "",
             "| set | " + " | ".join(methods) + " |", "|---" + "|---:" * len(methods) + "|"]
    for key in comp["sets"]:
        lines.append(f"| {_label(key)} | " + " | ".join(_cell(comp["accuracy"][m][key]) for m in methods) + " |")
    others = [m for m in methods if m != ref]
    if others:
        lines += ["", f"Gain over {ref} (accuracy points), paired by seed; **bold**: the 95% CI excludes 0", "",
                  "| set | " + " | ".join(f"{m} − {ref}" for m in others) + " |", "|---" + "|---:" * len(others) + "|"]
        for key in comp["sets"]:
            cells = [_gain_cell(comp["gain"][m][key]) for m in others]
            lines.append(f"| {_label(key)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- plot

def _curve(comp: dict, keys_per_level: list[tuple[float, list[str]]]) -> dict:
    """x levels and, per method, mean / CI bounds of the mean over each level's keys (per seed)."""
    per_method = {}
    for m in comp["methods"]:
        stats = [aggregate_seeds([math.fsum(v) / len(v) for v in zip(*(comp["accuracy"][m][k]["values"] for k in keys))])
                 for _, keys in keys_per_level]
        per_method[m] = {"mean": [s["mean"] for s in stats],
                         "low": [s["ci95_low"] if s["ci95_low"] is not None else math.nan for s in stats],
                         "high": [s["ci95_high"] if s["ci95_high"] is not None else math.nan for s in stats]}
    return {"x": [float(level) for level, _ in keys_per_level], "methods": per_method}


def _levels(comp: dict, names) -> dict[float, list[str]]:
    levels: dict[float, list[str]] = {}
    for key in comp["sets"]:
        if _is_set(key):
            name, severity, sigma = parse_set_key(key)
            if name in names:
                levels.setdefault(severity if sigma is None else sigma, []).append(key)
    return levels


def noise_curves(comp: dict) -> dict[str, dict]:
    """Per corruption: x levels (0 = clean, then severities or sigmas) and, per method,
    the mean / CI bounds at each level. {corruption: {"x": [...], "methods": {m: {"mean", "low", "high"}}}}"""
    curves = {}
    for name in SET_NAMES:
        levels = _levels(comp, (name,))
        if levels:
            curves[name] = _curve(comp, [(0.0, [CLEAN])] + sorted(levels.items()))
    return curves


def family_curves(comp: dict) -> dict[str, dict]:
    """Per family with corrupted sets: accuracy vs severity, the family mean at each severity
    (per seed, then over seeds), severity 0 = clean. Same layout as noise_curves."""
    curves = {}
    for family, names in FAMILIES.items():
        levels = _levels(comp, names)
        if levels:
            curves[family] = _curve(comp, [(0.0, [CLEAN])] + sorted(levels.items()))
    return curves


def _draw_panels(curves: dict, comp: dict, titles: dict):
    from matplotlib.figure import Figure  # no pyplot: nothing global, no display needed

    rows = math.ceil(len(curves) / _COLUMNS)
    cols = min(_COLUMNS, len(curves))
    fig = Figure(figsize=(4.2 * cols, 3.6 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat[len(curves):]:
        ax.axis("off")
    for ax, (name, curve) in zip(axes.flat, curves.items()):
        for m, line in curve["methods"].items():
            style = "--" if m == comp["reference"] else "-"
            (drawn,) = ax.plot(curve["x"], line["mean"], style, marker="o", label=m)
            # a t-interval can pass 0 or 100 with few seeds; the band shows only what accuracy can be
            low = [max(v, 0.0) for v in line["low"]]
            high = [min(v, 100.0) for v in line["high"]]
            ax.fill_between(curve["x"], low, high, color=drawn.get_color(), alpha=0.2, linewidth=0)
        ax.set_title(titles.get(name, name))
        ax.set_xlabel("sigma (0 = clean)" if name == GAUSSIAN else "severity (0 = clean)")
        ax.set_ylabel("top-1 accuracy (%)")
        ax.grid(alpha=0.3)
    n = len(comp["seeds"])
    axes[0][0].legend(title=f"mean, 95% CI ({n} seed{'s' * (n != 1)})", fontsize="small")
    fig.tight_layout()
    return fig


def _save(fig, base: Path) -> list[Path]:
    """<base>.png and .pdf, each written atomically."""
    from nvpt.engine.checkpoint import atomic_write

    written = []
    for fmt in ("png", "pdf"):
        target = base.with_name(f"{base.name}.{fmt}")
        atomic_write(target, lambda tmp, fmt=fmt: fig.savefig(tmp, format=fmt, dpi=150))
        written.append(target)
    return written


def plot_comparison(comp: dict, path: str | os.PathLike) -> list[Path]:
    """Accuracy vs severity, one line per method with its 95% CI band (drawn within 0..100):
    <path>.png/.pdf has a panel per corruption family (the family's mean accuracy at each
    severity) and one for plain Gaussian noise (vs sigma); with corrupted sets,
    <path>_corruptions.png/.pdf has a panel per corruption. Written atomically; returns the paths."""
    base = Path(path)
    families = family_curves(comp)
    singles = noise_curves(comp)
    main = {**families, **({GAUSSIAN: singles[GAUSSIAN]} if GAUSSIAN in singles else {})}
    if not main:  # clean only: a single point per method
        main = {CLEAN: {"x": [0.0], "methods": {m: {"mean": [comp["accuracy"][m][CLEAN]["mean"]],
                                                     "low": [math.nan], "high": [math.nan]}
                                                 for m in comp["methods"]}}}
    titles = {}
    for f in families:
        present = [n for n in FAMILIES[f] if n in singles]
        title = f"{f} (mean of {', '.join(present)})"
        titles[f] = title if len(title) < 48 else f"{f} (mean of {len(present)} corruptions)"
    written = _save(_draw_panels(main, comp, titles), base)
    corruptions = {k: v for k, v in singles.items() if k != GAUSSIAN}
    if corruptions:
        written += _save(_draw_panels(corruptions, comp, {}), base.with_name(f"{base.name}_corruptions"))
    return written


# ----------------------------------------------------------------------------- sweeps

def sweep_rows(comparisons: dict[str, dict]) -> list[dict]:
    """One row per (point, method) of several compare_runs() outputs, e.g. the points of a recipe search:
    {point, method, clean, mca} with clean / mca the aggregate_seeds() stats over the point's seeds."""
    rows = []
    for point, comp in comparisons.items():
        for method in comp["methods"]:
            acc = comp["accuracy"][method]
            rows.append({"point": point, "method": method, "seeds": comp["seeds"], "clean": acc[CLEAN],
                         "mca": acc.get(MEAN)})
    return rows


def best_row(rows: list[dict], by: str = "clean") -> dict:
    """The row with the highest mean `by` (clean or mca); the first one wins a tie."""
    if not rows:
        raise NVPTError("no sweep rows to choose from")
    return max(rows, key=lambda r: (r[by]["mean"] if r[by] is not None else -math.inf))


def sweep_markdown(rows: list[dict], chosen: dict | None = None) -> str:
    """| point | method | seeds | clean | mCA | with the chosen row in bold."""
    lines = ["| point | method | seeds | clean | mCA |", "|---|---|---|---:|---:|"]
    for r in rows:
        cells = [r["point"], r["method"], ",".join(map(str, r["seeds"])), _cell(r["clean"]),
                 _cell(r["mca"]) if r["mca"] is not None else "n/a"]
        if r is chosen:
            cells = [f"**{c}**" for c in cells]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- accuracy vs robustness

def parameters_markdown(comp: dict, params: dict[str, int | None]) -> str:
    """| method | trainable parameters | clean | mCA | mCA per 1k trainable parameters |, one row per method.
    `params`: method -> the trainable_params of its results.json (None for runs written before it existed)."""
    lines = ["Accuracy and robustness against what each method trains (trainable parameters, head included; "
             "mean ± std [95% CI] over seeds):", "",
             "| method | trainable parameters | clean | mCA |", "|---|---:|---:|---:|"]
    for m in comp["methods"]:
        acc = comp["accuracy"][m]
        n = params.get(m)
        lines.append(f"| {m} | {f'{n:,}' if n is not None else 'n/a'} | {_cell(acc[CLEAN])} | "
                     f"{_cell(acc[MEAN]) if MEAN in acc else 'n/a'} |")
    return "\n".join(lines) + "\n"


# where place_labels tries a label, nearest first: (dx, dy) in points from its point, and the text's alignment
_OFFSETS = [(dx * r, dy * r, ha, va) for r in (4, 10, 18) for dx, dy, ha, va in (
    (1, 1, "left", "bottom"), (1, -1, "left", "top"), (-1, 1, "right", "bottom"), (-1, -1, "right", "top"),
    (1, 0, "left", "center"), (-1, 0, "right", "center"), (0, 1, "center", "bottom"), (0, -1, "center", "top"))]


def place_labels(ax, labels: list[tuple[float, float, str, str | None]], fontsize: float = 7,
                 marker_px: float = 5) -> list:
    """Annotate each (x, y, text, colour), in data coordinates, at the nearest offset around its point where the
    label overlaps no label placed before it, no other point's marker (a square of +-marker_px pixels) and stays
    inside the axes; where none is free, at the offset with the fewest overlaps. Call it once the axes' scales,
    limits and the figure's layout are final: it measures the labels where they will be drawn."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.transforms import Bbox

    fig = ax.figure
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    renderer = canvas.get_renderer()
    points = ax.transData.transform([(x, y) for x, y, _, _ in labels]) if labels else []
    markers = [Bbox.from_extents(px - marker_px, py - marker_px, px + marker_px, py + marker_px) for px, py in points]
    frame = ax.get_window_extent(renderer)
    placed: list[Bbox] = []
    annotations = []
    for i, (x, y, text, colour) in enumerate(labels):
        best = None
        for dx, dy, ha, va in _OFFSETS:
            note = ax.annotate(text, (x, y), textcoords="offset points", xytext=(dx, dy), ha=ha, va=va,
                               fontsize=fontsize, color=colour,
                               bbox=dict(boxstyle="square,pad=0.1", facecolor="white", edgecolor="none", alpha=0.7))
            box = note.get_window_extent(renderer)
            outside = box.x0 < frame.x0 or box.y0 < frame.y0 or box.x1 > frame.x1 or box.y1 > frame.y1
            score = (3 * sum(box.overlaps(b) for b in placed) + 3 * outside
                     + sum(box.overlaps(m) for j, m in enumerate(markers) if j != i))
            if best is None or score < best[0]:
                if best is not None:
                    best[1].remove()
                best = (score, note, box)
            else:
                note.remove()
            if score == 0:
                break
        placed.append(best[2])
        annotations.append(best[1])
    return annotations


def plot_accuracy_robustness(comp: dict, path: str | os.PathLike, params: dict[str, int | None] | None = None) -> list[Path]:
    """Clean accuracy (x) against mean corrupted accuracy (y), one point per method with its 95% CIs as error
    bars, labelled with the method's trainable parameters when known: <path>.png/.pdf, written atomically."""
    if MEAN not in comp["sets"]:
        raise NVPTError("an accuracy-robustness figure needs corrupted sets (mean_corrupted): evaluate some noise")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.8))
    ax = fig.add_subplot()
    labels = []  # (clean, mCA, text, colour), placed once the layout is final
    for i, m in enumerate(comp["methods"]):
        clean, mca = comp["accuracy"][m][CLEAN], comp["accuracy"][m][MEAN]

        def err(stat):
            if stat["ci95_low"] is None:
                return None
            return [[stat["mean"] - stat["ci95_low"]], [stat["ci95_high"] - stat["mean"]]]

        ax.errorbar([clean["mean"]], [mca["mean"]], xerr=err(clean), yerr=err(mca), fmt="o", capsize=3,
                    color=f"C{i % 10}", label=m, zorder=3)
        n = (params or {}).get(m)
        labels.append((clean["mean"], mca["mean"], f"{m}" + (f"\n{n:,} params" if n is not None else ""), f"C{i % 10}"))
    ax.set_xlabel("clean accuracy (%)")
    ax.set_ylabel("mean corrupted accuracy, mCA (%)")
    seeds = len(comp["seeds"])
    ax.set_title(f"accuracy vs robustness, {seeds} seed{'s' if seeds != 1 else ''}" + (" (95% CI)" if seeds > 1 else ""),
                 fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    place_labels(ax, labels)
    return _save(fig, Path(path))
