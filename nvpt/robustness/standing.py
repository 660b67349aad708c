"""Where one method stands among the others of a comparison: the verdict docs/protocol.md defines for the PEFT
comparison (issue 21). Pure functions on a tools/compare.py comparison.json (no training).

    st = standing(comp, params, "spike_nvpt")          # comp: comparison.json, params: its trainable_params
    print(standing_markdown(st, comp, params, flops))  # flops: label -> deployed forward FLOPs per image

- **Rank**: by mean mCA over seeds among every method of the comparison (1 = the most robust).
- **Gains**: the method's clean and mCA gains over each other method, paired by seed (the t interval of
  nvpt.robustness.report.paired_gain); "ahead" or "behind" only where the 95% interval excludes 0, else "level".
- **Most robust per parameter**: the upper-left frontier of (trainable parameters, mean mCA) keeps a method unless
  another has more mean mCA with fewer trainable parameters (the protocol's words); among the frontier methods
  whose mean mCA reaches the lower end of the 95% interval of the highest mean mCA, the one with the fewest
  trainable parameters.
"""
from __future__ import annotations

from nvpt.errors import NVPTError
from nvpt.robustness.compare import CLEAN, MEAN, _cell, excludes_zero
from nvpt.robustness.report import paired_gain


def _values(comp: dict, method: str, key: str) -> list[float]:
    return comp["accuracy"][method][key]["values"]


def _mean(comp: dict, method: str) -> float:
    return comp["accuracy"][method][MEAN]["mean"]


def verdict_word(stat: dict) -> str:
    """"ahead" / "behind" where the paired 95% interval excludes 0, "level" otherwise (or with one seed)."""
    return ("ahead" if stat["mean"] > 0 else "behind") if excludes_zero(stat) else "level"


def standing(comp: dict, params: dict[str, int | None], method: str) -> dict:
    """{rank, of, gains: {other: {clean, mca, word_clean, word_mca}}, frontier: [methods by parameters], pick}."""
    methods = comp["methods"]
    if method not in methods:
        raise NVPTError(f"method {method!r} is not in the comparison; it has {', '.join(methods)}")
    if MEAN not in comp["sets"]:
        raise NVPTError("the comparison has no corrupted sets (mean_corrupted): nothing to rank by")
    by_mca = sorted(methods, key=lambda m: -_mean(comp, m))
    gains = {}
    for other in methods:
        if other != method:
            clean = paired_gain(_values(comp, method, CLEAN), _values(comp, other, CLEAN))
            mca = paired_gain(_values(comp, method, MEAN), _values(comp, other, MEAN))
            gains[other] = {"clean": clean, "mca": mca, "word_clean": verdict_word(clean), "word_mca": verdict_word(mca)}
    counted = [m for m in methods if params.get(m) is not None]
    frontier = sorted((m for m in counted
                       if not any(params[o] < params[m] and _mean(comp, o) > _mean(comp, m) for o in counted if o != m)),
                      key=lambda m: params[m])
    pick = None
    if frontier:
        top = max(frontier, key=lambda m: _mean(comp, m))
        low = comp["accuracy"][top][MEAN]["ci95_low"]
        floor = _mean(comp, top) if low is None else low
        pick = min((m for m in frontier if _mean(comp, m) >= floor), key=lambda m: params[m])
    return {"method": method, "rank": by_mca.index(method) + 1, "of": len(methods), "order": by_mca,
            "gains": gains, "frontier": frontier, "pick": pick}


def standing_markdown(st: dict, comp: dict, params: dict[str, int | None], flops: dict[str, float] | None = None) -> str:
    """The rank table (every method by mCA, its trainable parameters and deployed FLOPs), the paired gains of
    st's method over each other method, the frontier and the pick, as markdown."""
    flops = flops or {}
    bare = flops.get("linear")
    seeds = len(comp["seeds"])
    lines = [f"# Where {st['method']} stands ({seeds} seeds, paired by seed; mean ± std [95% Student-t interval])", "",
             f"**Rank by mCA: {st['rank']} of {st['of']}.**", "",
             "| rank | method | trainable parameters | deployed GFLOPs / image | clean | mCA | frontier |",
             "|---:|---|---:|---:|---:|---:|:---:|"]
    for i, m in enumerate(st["order"], 1):
        n = params.get(m)
        g = flops.get(m)
        cost = "n/a" if g is None else f"{g / 1e9:.4f}" + (f" ({g / bare:.2f}× linear)" if bare else "")
        lines.append(f"| {i} | {m} | {f'{n:,}' if n is not None else 'n/a'} | {cost} | "
                     f"{_cell(comp['accuracy'][m][CLEAN])} | {_cell(comp['accuracy'][m][MEAN])} | "
                     f"{'yes' if m in st['frontier'] else ''} |")
    lines += ["", f"{st['method']} − each method (clean and mCA gains paired by seed; ahead/behind only where the "
              "interval excludes 0):", "",
              "| other method | clean gain | | mCA gain | |", "|---|---:|---|---:|---|"]
    for other, g in st["gains"].items():
        lines.append(f"| {other} | {_cell(g['clean'], True)} | {g['word_clean']} | {_cell(g['mca'], True)} | {g['word_mca']} |")
    lines += ["", "Upper-left frontier of (trainable parameters, mCA): "
              + (", ".join(st["frontier"]) if st["frontier"] else "none (no trainable-parameter counts)") + "."]
    if st["pick"]:
        lines.append(f"Most robust per parameter: **{st['pick']}** (the fewest trainable parameters among the frontier "
                     "methods whose mean mCA reaches the lower end of the highest mean mCA's 95% interval).")
    return "\n".join(lines) + "\n"


def deployed_flops(comp: dict) -> dict[str, float]:
    """label -> floating-point operations of one deployed forward pass per image (torch's FlopCounterMode on the
    first run of each method, after deploy(): folded methods cost the bare backbone, a prompt its tokens)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from nvpt.engine.restore import load_run

    out = {}
    for label, runs in comp.get("runs", {}).items():
        if not runs:
            continue
        run = load_run(runs[0])
        model = run.model.deploy()
        size = run.cfg.model.img_size
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            model(torch.zeros(1, 3, size, size))
        out[label] = float(counter.get_total_flops())
    return out
