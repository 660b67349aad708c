"""Accuracy-robustness fronts and effective robustness (Taori et al. 2020), from sweep results: pure functions.

A *setting* is one method at one recipe point (learning rate, prompt length) over its seeds:
its clean accuracy and its robust accuracies per seed. Two robust accuracies are read from
each seed's evaluation sets:
  noise  the mean over the noise sets: the ImageNet-C noise family (Gaussian, shot, impulse,
         speckle noise at every severity) and the plain Gaussian sets; on the study's 24 sets
         this is the study's mCA
  suite  the mean over the 19 ImageNet-C corruptions at every severity (95 sets), when all 19
         were evaluated (None otherwise); the plain Gaussian sets are not in it

The reference method's front is a line in logit space, fit by least squares on its settings'
seed-mean points (as Taori et al. fit their baseline models, one point per model):
    logit(robust / 100) = slope * logit(clean / 100) + intercept
The effective robustness of a setting is its robust accuracy minus the front's prediction at
its clean accuracy, in accuracy points, averaged over its seeds (each seed's own clean and
robust accuracy). Its 95% interval combines two independent errors:
  - the seeds: the sample variance of the per-seed effective robustness over n seeds, s^2 / n;
  - the front: the standard error of the fitted line's mean at the setting's clean accuracy
    (ordinary least squares over m reference settings, m - 2 degrees of freedom), carried from
    logit space into accuracy points by the delta method (x 100 p (1 - p));
    SE^2 = s^2 / n + SE_front^2, with a Student-t critical value at the Welch-Satterthwaite
    degrees of freedom (rounded down). It needs n >= 2 seeds and m >= 3 front settings; with fewer
    the interval is not computed (None), never narrowed. Seeds shared between a setting and the
    front (the same crops) correlate them positively, so ignoring that covariance widens the
    interval rather than narrowing it. The reference method's own rows are residuals of the fit
    they are part of.

    settings = [setting_from_comparison(comp, "spike_nvpt", lr=1.0, length=32), ...]
    fronts = fit_fronts(settings, reference="vpt_deep")        # one per robust measure
    rows = front_rows(settings, fronts)
    print(fronts_markdown(rows, fronts))
"""
from __future__ import annotations

import math

from nvpt.config import CORRUPTIONS
from nvpt.errors import NVPTError
from nvpt.robustness.compare import _cell, excludes_zero, family_markdown, summary_markdown
from nvpt.robustness.corruptions import FAMILIES, GAUSSIAN
from nvpt.robustness.report import aggregate_seeds, paired_gain, parse_set_key, t_critical_95

MEASURES = ("noise", "suite")
MEASURE_LABELS = {"noise": "mCA, noise sets", "suite": "mCA, full suite"}
# accuracies are clamped to [EPS, 100 - EPS] before the logit, so 0 % and 100 % stay finite
EPS = 0.1
TIE = 0.1  # fronts-final: distances to the target within TIE points are a tie (docs/protocol.md)


# ----------------------------------------------------------------------------- logit space

def logit(acc: float) -> float:
    """logit of an accuracy in percent (clamped to [EPS, 100 - EPS])."""
    p = min(max(acc, EPS), 100.0 - EPS) / 100.0
    return math.log(p / (1.0 - p))


def expit(z: float) -> float:
    """Inverse of `logit`: an accuracy in percent."""
    return 100.0 / (1.0 + math.exp(-z))


# ----------------------------------------------------------------------------- settings

def robust_accuracies(sets: dict[str, float]) -> dict[str, float | None]:
    """{"noise": mean over the noise sets or None, "suite": mean over the 19 corruptions' sets or None}
    from one seed's {set key: accuracy}."""
    noise, suite, names = [], [], set()
    for key, acc in sets.items():
        name, _, _ = parse_set_key(key)
        if name in FAMILIES["noise"] or name == GAUSSIAN:
            noise.append(acc)
        if name != GAUSSIAN:
            suite.append(acc)
            names.add(name)
    return {"noise": math.fsum(noise) / len(noise) if noise else None,
            "suite": math.fsum(suite) / len(suite) if names == set(CORRUPTIONS) else None}


def setting_from_comparison(comp: dict, method: str, lr: float, length: int) -> dict:
    """One setting from a compare_runs() output: {method, lr, length, seeds, clean, noise, suite}, the last
    three per seed (in `seeds` order; noise / suite None when the sets were not evaluated)."""
    if method not in comp.get("accuracy", {}):
        raise NVPTError(f"the comparison has no method {method!r}; it has {', '.join(comp.get('accuracy', {}))}")
    acc = comp["accuracy"][method]
    keys = [k for k in comp["sets"] if k != "clean" and k != "mean_corrupted" and not k.startswith("family:")]
    per_seed = [robust_accuracies({k: acc[k]["values"][i] for k in keys}) for i in range(len(comp["seeds"]))]
    out = {"method": method, "lr": float(lr), "length": int(length), "seeds": list(comp["seeds"]),
           "clean": list(acc["clean"]["values"])}
    for measure in MEASURES:
        values = [r[measure] for r in per_seed]
        out[measure] = None if any(v is None for v in values) else values
    return out


def sweep_settings(comparisons: dict[str, dict]) -> list[dict]:
    """Every method of every comparison (tools/compare.py's comparison.json, labelled) as a setting, its learning rate
    and prompt length read from the comparison's "recipe"; two comparisons may not hold the same setting."""
    settings, seen = [], {}
    for label, comp in comparisons.items():
        recipe = comp.get("recipe") if isinstance(comp, dict) else None
        if not recipe:
            raise NVPTError(f"{label} records no recipe (learning rate, prompt length): it was written by an older "
                            "tools/compare.py; rerun its command (finished runs are reused)")
        for method in comp["methods"]:
            r = recipe[method]
            s = setting_from_comparison(comp, method, r["train.base_lr"], r["prompt.length"])
            key = (method, s["lr"], s["length"])
            if key in seen:
                raise NVPTError(f"{label} and {seen[key]} both hold {method} at {lr_label(s['lr'])}, "
                                f"{s['length']} tokens: pass each setting once")
            seen[key] = label
            settings.append(s)
    return settings


def _mean(values: list[float]) -> float:
    return math.fsum(values) / len(values)


# ----------------------------------------------------------------------------- the front

def fit_front(points: list[tuple[float, float]]) -> dict:
    """Least-squares line logit(robust) = slope * logit(clean) + intercept through (clean, robust) points (%).

    Returns {slope, intercept, n, x_mean, sxx, resid_sd (None with 2 points), df}."""
    if len(points) < 2:
        raise NVPTError(f"a front needs at least 2 reference settings, got {len(points)}")
    xs = [logit(c) for c, _ in points]
    ys = [logit(r) for _, r in points]
    x_mean, y_mean = _mean(xs), _mean(ys)
    sxx = math.fsum((x - x_mean) ** 2 for x in xs)
    if sxx < 1e-12:
        raise NVPTError("the reference settings all have the same clean accuracy: no front can be fit through them")
    slope = math.fsum((x - x_mean) * (y - y_mean) for x, y in zip(xs, ys)) / sxx
    intercept = y_mean - slope * x_mean
    df = len(points) - 2
    resid = [y - (slope * x + intercept) for x, y in zip(xs, ys)]
    resid_sd = math.sqrt(math.fsum(r * r for r in resid) / df) if df > 0 else None
    return {"slope": slope, "intercept": intercept, "n": len(points), "x_mean": x_mean, "sxx": sxx,
            "resid_sd": resid_sd, "df": df}


def predict(front: dict, clean: float) -> float:
    """The front's robust accuracy (%) at a clean accuracy (%)."""
    return expit(front["slope"] * logit(clean) + front["intercept"])


def front_se(front: dict, clean: float) -> float | None:
    """Standard error (accuracy points) of the fitted front's mean at a clean accuracy; None with 2 points."""
    if front["resid_sd"] is None:
        return None
    x = logit(clean)
    se_logit = front["resid_sd"] * math.sqrt(1.0 / front["n"] + (x - front["x_mean"]) ** 2 / front["sxx"])
    p = predict(front, clean) / 100.0
    return 100.0 * p * (1.0 - p) * se_logit


def fit_fronts(settings: list[dict], reference: str = "vpt_deep") -> dict[str, dict | None]:
    """The reference method's front per robust measure ({measure: fit_front(...) or None when the
    measure is missing}), fit on its settings' seed-mean points, each tagged with its points."""
    ref = [s for s in settings if s["method"] == reference]
    if not ref:
        raise NVPTError(f"no settings of the reference method {reference!r}; methods: "
                        f"{', '.join(sorted({s['method'] for s in settings})) or 'none'}")
    fronts = {}
    for measure in MEASURES:
        if any(s[measure] is None for s in ref):
            fronts[measure] = None
            continue
        points = [(_mean(s["clean"]), _mean(s[measure])) for s in ref]
        fronts[measure] = {**fit_front(points), "reference": reference, "points": points}
    return fronts


def effective_robustness(setting: dict, measure: str, front: dict) -> dict:
    """{mean, se, df, ci95_low, ci95_high, values} of the setting's effective robustness (accuracy points) against
    a front; se / df / interval None with one seed or a 2-point front (see the module docstring)."""
    values = [r - predict(front, c) for c, r in zip(setting["clean"], setting[measure])]
    n = len(values)
    mean = _mean(values)
    out = {"mean": mean, "se": None, "df": None, "ci95_low": None, "ci95_high": None, "values": values}
    se_front = front_se(front, _mean(setting["clean"]))
    if n < 2 or se_front is None:
        return out
    var_seeds = aggregate_seeds(values)["std"] ** 2 / n
    var = var_seeds + se_front ** 2
    if var <= 0:
        return {**out, "se": 0.0, "df": None, "ci95_low": mean, "ci95_high": mean}
    terms = (var_seeds ** 2 / (n - 1) if var_seeds > 0 else 0.0) + \
        (se_front ** 4 / front["df"] if se_front > 0 else 0.0)
    # Welch-Satterthwaite lies between the smaller and the summed degrees of freedom; rounding down (never below
    # the smaller one, which float error could otherwise cross) keeps the interval conservative
    df = max(min(n - 1, front["df"]), var ** 2 / terms)
    half = t_critical_95(int(math.floor(df + 1e-9))) * math.sqrt(var)
    return {**out, "se": math.sqrt(var), "df": df, "ci95_low": mean - half, "ci95_high": mean + half}


# ----------------------------------------------------------------------------- rows and tables

def front_rows(settings: list[dict], fronts: dict[str, dict | None]) -> list[dict]:
    """One row per setting, sorted by method (reference first), length, lr:
    {method, lr, length, seeds, clean, <measure>: aggregate_seeds or None, er_<measure>: effective_robustness or None,
    best_clean: whether the setting has its method x length's best mean clean accuracy (VPT's criterion)}."""
    ref = next((f["reference"] for f in fronts.values() if f), None)
    rows = []
    for s in sorted(settings, key=lambda s: (s["method"] != ref, s["method"], s["length"], s["lr"])):
        row = {"method": s["method"], "lr": s["lr"], "length": s["length"], "seeds": s["seeds"],
               "clean": aggregate_seeds(s["clean"])}
        for measure in MEASURES:
            row[measure] = aggregate_seeds(s[measure]) if s[measure] is not None else None
            front = fronts.get(measure)
            row[f"er_{measure}"] = effective_robustness(s, measure, front) if front and s[measure] is not None else None
        rows.append(row)
    for row in rows:
        group = [r for r in rows if (r["method"], r["length"]) == (row["method"], row["length"])]
        row["best_clean"] = row is max(group, key=lambda r: r["clean"]["mean"])
    return rows


def pick_setting(settings: list[dict], method: str, length: int, target: float, tie: float = TIE) -> dict:
    """The pre-registered final's rule (docs/protocol.md): among the method's settings at this prompt length, the one
    whose mean clean accuracy is closest to `target`; distances within `tie` points of the closest are a tie, won
    by the smallest learning rate."""
    pool = [s for s in settings if s["method"] == method and s["length"] == length]
    if not pool:
        raise NVPTError(f"no sweep setting of {method} with {length} prompt tokens to pick from")
    distance = {id(s): abs(_mean(s["clean"]) - target) for s in pool}
    closest = min(distance.values())
    return min((s for s in pool if distance[id(s)] <= closest + tie + 1e-9), key=lambda s: s["lr"])


def _stat(stat: dict | None, signed: bool = False) -> str:
    """nvpt.robustness.compare's cell ("80.12 ± 0.53 [79.46, 80.78]"); an effective robustness has no std:
    "+3.00 [+0.52, +5.48]"; "n/a" for a missing measure."""
    if stat is None:
        return "n/a"
    if "std" in stat:
        return _cell(stat, signed)
    f = "+.2f" if signed else ".2f"
    interval = f" [{stat['ci95_low']:{f}}, {stat['ci95_high']:{f}}]" if stat["ci95_low"] is not None else ""
    return format(stat["mean"], f) + interval


def _er_cell(stat: dict | None) -> str:
    """A signed cell, bold where its 95% interval excludes 0."""
    text = _stat(stat, signed=True)
    return f"**{text}**" if stat is not None and stat["ci95_low"] is not None and excludes_zero(stat) else text


def lr_label(lr: float) -> str:
    return f"lr {lr:g}"


def fronts_markdown(rows: list[dict], fronts: dict[str, dict | None]) -> str:
    """The fronts (one line each) and the points table: one row per method x setting, starting with the method,
    e.g. | spike_nvpt | lr 1 | 32 | 0,1,2 | clean | mCA noise | ER noise | mCA suite | ER suite | chosen |."""
    lines = []
    for measure in MEASURES:
        f = fronts.get(measure)
        if f is None:
            lines.append(f"- {MEASURE_LABELS[measure]}: not evaluated")
            continue
        sd = f"{f['resid_sd']:.3f}" if f["resid_sd"] is not None else "n/a (2 points)"
        lines.append(f"- {MEASURE_LABELS[measure]}: {f['reference']}'s front, logit(robust) = {f['slope']:.3f} · "
                     f"logit(clean) {f['intercept']:+.3f}, fit on its {f['n']} settings' seed means "
                     f"(residual SD {sd} in logit units)")
    ref = next((f["reference"] for f in fronts.values() if f), "the reference")
    lines += ["", "Accuracies (%): mean ± std [95% Student-t CI] over the seeds. Effective robustness (accuracy points): "
              "mCA minus the front's prediction at the clean accuracy, per seed then averaged, with a 95% interval over "
              "the seeds and the front's own error (nvpt/robustness/fronts.py); **bold** where it excludes 0, n/a "
              f"where it cannot be computed (one seed, a 2-point front). {ref}'s rows are residuals of the fit they are "
              "part of. Chosen on validation: each method x length's best mean clean accuracy (VPT's criterion).", "",
              "| method | lr | tokens | seeds | clean | mCA, noise sets | eff. robustness, noise | "
              "mCA, full suite | eff. robustness, suite | chosen on validation |",
              "|---|---|---:|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        cells = [r["method"], lr_label(r["lr"]), str(r["length"]), ",".join(map(str, r["seeds"])), _stat(r["clean"]),
                 _stat(r["noise"]), _er_cell(r["er_noise"]), _stat(r["suite"]), _er_cell(r["er_suite"]),
                 "best clean" if r["best_clean"] else ""]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def measures_markdown(comp: dict) -> str:
    """Clean, noise-set mCA and full-suite mCA per method of a comparison, and each other method's gain over the
    reference paired by seed (mean ± std [95% CI]; bold where the interval excludes 0)."""
    ref = comp["reference"]
    per = {m: setting_from_comparison(comp, m, 1.0, 1) for m in comp["methods"]}
    keys = ("clean",) + MEASURES
    lines = ["| method | clean | " + " | ".join(MEASURE_LABELS[k] for k in MEASURES) + " |", "|---|---:|---:|---:|"]
    for m, s in per.items():
        lines.append(f"| {m} | " + " | ".join(_stat(aggregate_seeds(s[k])) if s[k] is not None else "n/a"
                                               for k in keys) + " |")
    for m, s in per.items():
        if m != ref:
            cells = [_er_cell(paired_gain(s[k], per[ref][k])) if s[k] is not None else "n/a" for k in keys]
            lines.append(f"| {m} − {ref} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def final_markdown(target: float, picks: dict[int, dict[str, dict]], comps: dict[int, dict]) -> str:
    """The pre-registered final: per prompt length, each method's setting picked on validation (pick_setting) and
    its test comparison (summary and per-family tables of nvpt.robustness.compare)."""
    lines = [f"Target clean accuracy {target:g} % (validation, docs/protocol.md); each method at the learning rate of "
             "its sweep whose mean clean validation accuracy is closest to it (ties within "
             f"{TIE:g} points: the smaller learning rate); then {len(next(iter(comps.values()))['seeds'])} seeds on "
             "the test split, paired by seed.", ""]
    for length, chosen in picks.items():
        lines += [f"## {length} prompt tokens", "", "| method | lr | clean (validation, sweep) |", "|---|---|---:|"]
        for method, s in chosen.items():
            lines.append(f"| {method} | {lr_label(s['lr'])} | {_stat(aggregate_seeds(s['clean']))} |")
        lines += ["", "Test split:", "", measures_markdown(comps[length]), "", summary_markdown(comps[length]),
                  family_markdown(comps[length])]
    return "\n".join(lines)
