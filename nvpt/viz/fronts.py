"""Accuracy-robustness fronts: clean accuracy against mCA, one panel per robust measure (noise sets, full suite).

    plot_fronts(rows, fronts, "docs/results/study/fronts")   # rows, fronts: nvpt.robustness.fronts

Axes are logit-scaled (Taori et al. 2020), so the reference method's fitted front is the straight
line drawn through its points. Every setting is a point at its seed means with 95% Student-t bars
on both axes (over its seeds), coloured by method, shaped by prompt length, labelled by learning rate.
"""
from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

from nvpt.robustness.fronts import EPS, MEASURE_LABELS, MEASURES, predict
from nvpt.robustness.compare import place_labels
from nvpt.viz import save_figure
from nvpt.viz.curves import METHOD_STYLE

_MARKERS = "osD^v<>p"
# candidate ticks (%) of the logit axes: dense near 100, where logit axes stretch
_TICKS = (1, 2, 5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55, 60, 65, 70, 75, 80, 85, 90, 92, 94, 95, 96, 97, 98, 99, 99.5, 99.9)


def _frac(acc: float) -> float:
    return min(max(acc, EPS), 100.0 - EPS) / 100.0


def _bar(stat: dict) -> tuple[float, float]:
    """(below, above) error bar lengths in fractions, the interval clipped to what the logit axis can show."""
    if stat.get("ci95_low") is None:
        return 0.0, 0.0
    mid = _frac(stat["mean"])
    return mid - _frac(stat["ci95_low"]), _frac(stat["ci95_high"]) - mid


def plot_fronts(rows: list[dict], fronts: dict, out_prefix: str | Path, title: str = "") -> list[Path]:
    """<out_prefix>.png/.pdf: a panel per robust measure that was evaluated; returns the paths."""
    measures = [m for m in MEASURES if fronts.get(m) is not None]
    fig = Figure(figsize=(6.0 * max(1, len(measures)), 5.0))
    axes = fig.subplots(1, max(1, len(measures)), squeeze=False)[0]
    lengths = sorted({r["length"] for r in rows})
    percent = FuncFormatter(lambda v, _pos: f"{100 * v:g}")
    labels = {}  # per axes: (x, y, lr, colour), placed once the layout is final
    for ax, measure in zip(axes, measures):
        front = fronts[measure]
        cleans = [r["clean"]["mean"] for r in rows] + [c for c, _ in front["points"]]
        lo, hi = min(cleans) - 1.0, max(cleans) + 1.0
        xs = [lo + (hi - lo) * i / 100 for i in range(101)]
        ax.plot([_frac(x) for x in xs], [_frac(predict(front, x)) for x in xs], "k--", linewidth=1,
                label=f"{front['reference']} front (logit fit, {front['n']} settings)")
        for method in dict.fromkeys(r["method"] for r in rows):
            colour, name = METHOD_STYLE.get(method, (None, method))
            for r in (r for r in rows if r["method"] == method and r[measure] is not None):
                marker = _MARKERS[lengths.index(r["length"]) % len(_MARKERS)]
                x, y = _frac(r["clean"]["mean"]), _frac(r[measure]["mean"])
                _, caps, bars = ax.errorbar(x, y, xerr=[[v] for v in _bar(r["clean"])],
                                            yerr=[[v] for v in _bar(r[measure])], fmt=marker, color=colour,
                                            capsize=2, markersize=6, linewidth=1, zorder=3)
                for part in (*caps, *bars):  # faint bars: where settings crowd, the points and labels stay legible
                    part.set_alpha(0.35)
                labels.setdefault(ax, []).append((x, y, f"{r['lr']:g}", colour))
            ax.plot([], [], "o", color=colour, label=name)
        for i, length in enumerate(lengths):
            ax.plot([], [], _MARKERS[i % len(_MARKERS)], color="gray", label=f"{length} tokens")
        ax.set_xscale("logit")
        ax.set_yscale("logit")
        for axis, limits in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
            shown = [t / 100 for t in _TICKS if limits[0] <= t / 100 <= limits[1]]
            if len(shown) >= 2:
                axis.set_major_locator(FixedLocator(shown))
                axis.set_minor_locator(NullLocator())
            axis.set_major_formatter(percent)
            axis.set_minor_formatter(FuncFormatter(lambda v, _pos: ""))
        ax.set_xlabel("clean accuracy (%, logit axis)")
        ax.set_ylabel(f"{MEASURE_LABELS[measure]} (%, logit axis)")
        ax.set_title(MEASURE_LABELS[measure])
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize="small", title="mean, 95% CI over seeds; labels: lr")
    if not measures:
        axes[0].axis("off")
        axes[0].text(0.5, 0.5, "no robust measure evaluated", ha="center")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    for ax, points in labels.items():
        place_labels(ax, points)
    return save_figure(fig, out_prefix)
