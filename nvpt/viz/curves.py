"""Accuracy under noise of several runs, from their results.json summaries.

    curves = accuracy_curves(json.load(open("runs/demo/spike_nvpt-s0/results.json")))
    # {"gaussian": [(0.0, clean), (0.05, acc), ...], "gaussian_noise": [(0, clean), (1, acc), ...]}
    plot_accuracy_vs_noise({"spike_nvpt-s0": summary, "vpt_deep-s0": other}, "visualizations/accuracy_vs_noise")

Every curve starts at the clean accuracy (sigma / severity 0). The figure has a panel for
plain Gaussian noise (x: sigma on [0, 1] images) and one per corruption found in any run
(x: severity), five panels to a row, a line per run, coloured and labelled by its method.
"""
from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from nvpt.config import CORRUPTIONS
from nvpt.errors import NVPTError
from nvpt.robustness.corruptions import GAUSSIAN
from nvpt.robustness.report import parse_set_key
from nvpt.viz import save_figure

METHOD_STYLE = {  # method -> (colour, label); Spike-NVPT is drawn thicker and on top
    "spike_nvpt": ("tab:red", "Spike-NVPT"),
    "vpt_deep": ("tab:blue", "VPT-deep"),
    "vpt_shallow": ("tab:cyan", "VPT-shallow"),
    "linear": ("tab:gray", "linear probe"),
    "full": ("tab:green", "full fine-tuning"),
}
_PANELS = (GAUSSIAN,) + CORRUPTIONS
_MARKERS = "osD^v<>p"
_DASHES = ("-", "--", "-.", ":")
_COLUMNS = 5  # panels per row


def accuracy_curves(summary: dict) -> dict[str, list[tuple[float, float]]]:
    """{set name: [(level, accuracy %), ...]} from a results.json summary, level 0 = clean, sorted.
    "gaussian" (levels = sigma) is always there, corruptions (levels = severity) when evaluated."""
    if not isinstance(summary, dict) or "clean" not in summary or not isinstance(summary.get("sets"), dict):
        raise NVPTError("not a results.json summary: it needs 'clean' and 'sets' (written by tools/train.py)")
    clean = float(summary["clean"])
    points: dict[str, list[tuple[float, float]]] = {GAUSSIAN: []}
    for key, row in summary["sets"].items():
        name, severity, sigma = parse_set_key(key)
        accuracy = row.get("accuracy") if isinstance(row, dict) else row
        if accuracy is None:
            raise NVPTError(f"results.json set {key!r} has no accuracy")
        points.setdefault(name, []).append((sigma if name == GAUSSIAN else float(severity), float(accuracy)))
    return {name: [(0.0, clean)] + sorted(points[name]) for name in _PANELS if name in points}


def method_style(method: str | None) -> tuple[str, str]:
    """(colour, legend label) of a method; unknown ones are black and labelled by their name."""
    return METHOD_STYLE.get(method, ("black", method or "unknown method"))


def plot_accuracy_vs_noise(results: dict[str, dict], out_prefix: str | Path, title: str | None = None) -> list[Path]:
    """results: {run name: results.json summary (with its 'method')} -> accuracy vs noise figure."""
    if not results:
        raise NVPTError("no runs to plot accuracy curves for (pass run folders holding results.json)")
    curves = {run: accuracy_curves(summary) for run, summary in results.items()}
    panels = [name for name in _PANELS if any(name in c for c in curves.values())]
    methods = [results[run].get("method") for run in results]
    cols = min(len(panels), _COLUMNS)
    rows = -(-len(panels) // cols)
    fig = Figure(figsize=(max(7.0, 4.6 * cols + 0.6), 4.4 * rows), layout="constrained")
    grid = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in grid[len(panels):]:
        ax.axis("off")
    axes = grid[:len(panels)]
    seen: dict[str | None, int] = {}
    # Spike-NVPT last, so its lines lie on top of the baselines'
    order = sorted(results, key=lambda run: (results[run].get("method") == "spike_nvpt", run))
    for run in order:
        method = results[run].get("method")
        color, name = method_style(method)
        repeat = seen.get(method, 0)
        seen[method] = repeat + 1
        label = name if methods.count(method) == 1 else f"{name} ({run})"
        spike = method == "spike_nvpt"
        for ax, panel in zip(axes, panels):
            if panel not in curves[run]:
                continue
            xs, ys = zip(*curves[run][panel])
            ax.plot(xs, ys, color=color, lw=2.6 if spike else 1.6, ls=_DASHES[repeat % len(_DASHES)],
                    marker=_MARKERS[repeat % len(_MARKERS)], markersize=5, label=label)
    for ax, panel in zip(axes, panels):
        if panel == GAUSSIAN:
            ax.set_title("Gaussian noise on the input image")
            ax.set_xlabel("noise std \u03c3 (images in [0, 1]; 0 = clean)")
        else:
            ax.set_title(f"{panel.replace('_', ' ')} (corruption severities)")
            ax.set_xlabel("severity (0 = clean)")
            ax.set_xticks(range(6))
        ax.set_ylabel("top-1 accuracy (%)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, loc="best")
    fig.suptitle("Accuracy vs noise level" + (f"\n{title}" if title else ""), fontsize=12)
    return save_figure(fig, out_prefix)


def read_results(path: str | Path) -> tuple[str, dict]:
    """(run name, results.json summary with its method) of a run folder or a results.json file, checked for the
    curves: a malformed summary fails here, before any figure."""
    from nvpt.robustness.runs import read_config, setting
    from nvpt.robustness.schema import read_summary

    path = Path(path)
    file = path / "results.json" if path.is_dir() else path
    if not file.is_file():
        raise NVPTError(f"{path} has no results.json: the run has not finished its final evaluation "
                        "(--runs takes finished run folders)")
    summary = read_summary(file, "--runs takes run folders that tools/train.py finished")
    try:
        accuracy_curves(summary)
    except NVPTError as exc:
        raise NVPTError(f"{file}: {exc}") from None
    summary.setdefault("method", setting(read_config(file.parent), "prompt", "method"))
    return file.parent.name, summary
