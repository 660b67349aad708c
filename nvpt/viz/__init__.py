"""Figures of Spike-NVPT: what the Signal Filtering Layer does to noise, and accuracy under noise.

    from nvpt.viz.spikes import noise_responses, plot_membrane_potential, plot_binary_prompts, plot_firing_rates
    from nvpt.viz.curves import plot_accuracy_vs_noise

Every plot function takes tensors/dicts and an output path prefix and writes `<prefix>.png`
and `<prefix>.pdf`, returning both paths. Figures are drawn on `matplotlib.figure.Figure`
(the Agg canvas, never pyplot), so nothing needs a display and no global figure state leaks.
`tools/visualize_spikes.py` finds the runs and calls these (see docs/visualizations.md).
"""
from __future__ import annotations

from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.text import Annotation

DPI = 150
FORMATS = ("png", "pdf")
# where place_labels tries a label, nearest first: (dx, dy) in points from its point, and the text's alignment
_OFFSETS = [(dx * r, dy * r, ha, va) for r in (4, 10, 18) for dx, dy, ha, va in (
    (1, 1, "left", "bottom"), (1, -1, "left", "top"), (-1, 1, "right", "bottom"), (-1, -1, "right", "top"),
    (1, 0, "left", "center"), (-1, 0, "right", "center"), (0, 1, "center", "bottom"), (0, -1, "center", "top"))]


def save_figure(fig: Figure, out_prefix: str | Path) -> list[Path]:
    """Write `fig` as <out_prefix>.png and .pdf (atomically: a reader never sees half a file)."""
    from nvpt.engine.checkpoint import atomic_write

    prefix = Path(out_prefix)
    paths = []
    for fmt in FORMATS:
        path = prefix.with_name(f"{prefix.name}.{fmt}")
        # the temporary file has no image suffix, so the format is named explicitly
        atomic_write(path, lambda tmp, fmt=fmt: fig.savefig(tmp, format=fmt, dpi=DPI))
        paths.append(path)
    return paths


def place_labels(ax: Axes, labels: list[tuple[float, float, str, str | None]], fontsize: float = 7,
                 marker_px: float = 5) -> list[Annotation]:
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
