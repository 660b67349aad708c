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

from matplotlib.figure import Figure

DPI = 150
FORMATS = ("png", "pdf")


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
