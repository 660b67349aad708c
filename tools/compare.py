"""Train (or collect) several methods over several seeds and compare them with confidence intervals.

    python tools/compare.py configs/demo/base.yaml --methods spike_nvpt vpt_deep --seeds 3
    python tools/compare.py configs/dtd.yaml train.epochs=50 --methods spike_nvpt vpt_deep vpt_shallow --seeds 5

Run i of method m is <output_dir>/<config stem>-<m>-s<i>, trained with prompt.method=<m>, seed=<i>.
A method's own recipe, when the config folder holds <config stem>_<m>.yaml (e.g. dtd_full.yaml),
is read from that file instead. A --methods entry may also be a YAML file (a variant, e.g. an
ablation in configs/ablations/): it is labelled by its file name and trained as it says.
With --reuse (the default) a run folder that already holds results.json for the same config
is collected instead of retrained, and an unfinished one is resumed. Writes comparison.md (summary,
per-family means, every set), comparison.json, comparison.png/.pdf (accuracy vs severity per
corruption family) and, with corruptions, comparison_corruptions.png/.pdf (per corruption) to --out
(default <output_dir>/compare-<config stem>).
"""
import argparse
import json
import sys
import textwrap
import time
from pathlib import Path

import _bootstrap  # noqa: F401

from nvpt.cli import parser, run_main
from nvpt.config import METHODS, load_config
from nvpt.engine.checkpoint import atomic_write_text
from nvpt.errors import NVPTError
from nvpt.robustness.compare import compare_runs, comparison_markdown, family_markdown, plot_comparison, summary_markdown
from nvpt.robustness.evaluate import robustness_sets
from nvpt.robustness.report import write_json

# set per run by this tool
OWN_KEYS = ("prompt.method", "seed", "run_name")
# keys that do not change what a run computes (or are rewritten when it resumes)
IGNORED_KEYS = {"output_dir", "run_name", "train.resume", "train.threads", "train.save_every", "data.num_workers"}


def build_parser():
    p = parser("Train or collect each method x seed, then tabulate and plot mean, std and 95% CI "
               "of every method and its paired gain over the reference.")
    p.add_argument("config", help="YAML config shared by all runs, e.g. configs/demo/base.yaml")
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides for every run, e.g. train.epochs=10")
    p.add_argument("--methods", nargs="+", default=["spike_nvpt", "vpt_deep"], metavar="METHOD",
                   help=f"methods to compare ({', '.join(METHODS)}); default: spike_nvpt vpt_deep")
    p.add_argument("--seeds", type=int, default=3, metavar="N", help="train seeds 0..N-1 (default 3)")
    p.add_argument("--reference", default="vpt_deep", metavar="METHOD",
                   help="method the gains are measured against (default vpt_deep; must be in --methods)")
    p.add_argument("--reuse", action=argparse.BooleanOptionalAction, default=True,
                   help="collect finished runs with the same config instead of retraining (default on)")
    p.add_argument("--out", metavar="DIR", help="output folder (default <output_dir>/compare-<config stem>)")
    return p


def check_args(args) -> None:
    """Everything that can be wrong with the command line, before any training."""
    unknown = [m for m in args.methods if m not in METHODS and not is_variant(m)]
    if unknown:
        hint = "; put key=value overrides right after CONFIG" if any("=" in m for m in unknown) else ""
        raise NVPTError(f"unknown method {unknown[0]!r} in --methods; valid: {', '.join(METHODS)} or an existing "
                        f"config .yaml{hint}")
    if len(set(args.methods)) != len(args.methods):
        raise NVPTError(f"--methods lists a method twice: {' '.join(args.methods)}")
    labels = [Path(m).stem if is_variant(m) else m for m in args.methods]
    if args.reference not in labels:
        raise NVPTError(f"--reference {args.reference} must be one of --methods ({' '.join(args.methods)})")
    if args.seeds < 1:
        raise NVPTError(f"--seeds must be >= 1, got {args.seeds}")
    own = [o for o in args.overrides if o.split("=", 1)[0].strip() in OWN_KEYS]
    if own:
        raise NVPTError(f"override {own[0]!r} is not allowed: compare.py sets {', '.join(OWN_KEYS)} for each run")


def is_variant(entry: str) -> bool:
    return entry.endswith((".yaml", ".yml"))


def method_config(config: str, entry: str) -> tuple[str, Path, list[str]]:
    """--methods entry -> (label, config file, overrides it implies)."""
    if is_variant(entry):
        if not Path(entry).is_file():
            raise NVPTError(f"--methods {entry}: config file not found")
        return Path(entry).stem, Path(entry), []
    base = Path(config)
    own = base.with_name(f"{base.stem}_{entry}{base.suffix}")  # e.g. configs/dtd_full.yaml
    return entry, (own if own.is_file() else base), [f"prompt.method={entry}"]


def flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in tree.items():
        out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def config_differences(planned, saved) -> list[str]:
    """Keys whose values differ between the run we would train and a run folder's config.yaml."""
    a, b = flat(planned.to_dict()), flat(saved.to_dict())
    if planned.prompt.method != "spike_nvpt":  # the spiking keys do not change what other methods compute
        a = {k: v for k, v in a.items() if not (k.startswith("spike.") or k == "prompt.deep")}
    return [k for k in a if k not in IGNORED_KEYS and a[k] != b.get(k)
            # num_classes=null is resolved from the data set when the run starts
            and not (k == "model.num_classes" and a[k] is None)]


def plan_run(cfg, run_dir: Path, reuse: bool) -> str:
    """'train', 'reuse' (finished, same config) or 'resume' (unfinished, same config); else an error."""
    if not run_dir.exists() or not any(run_dir.iterdir()):
        return "train"
    if not reuse:
        raise NVPTError(f"run folder {run_dir} already exists; pass --reuse to collect it, or another output_dir=")
    saved = run_dir / "config.yaml"
    if not saved.is_file():
        raise NVPTError(f"run folder {run_dir} has no config.yaml; move it away or pass another output_dir=")
    diffs = config_differences(cfg, load_config(saved))
    if diffs:
        shown = ", ".join(diffs[:5]) + (f" (+{len(diffs) - 5} more)" if len(diffs) > 5 else "")
        raise NVPTError(f"run folder {run_dir} was trained with another config (differs in {shown}); "
                        "pass another output_dir= or move it away")
    if (run_dir / "results.json").is_file():
        return "reuse"
    return "resume"  # unfinished: continues from checkpoint-last, or restarts epoch 0 without one


def main(argv):
    args = build_parser().parse_intermixed_args(argv)
    check_args(args)
    base = load_config(args.config, args.overrides)
    robustness_sets(base.eval)  # a bad corruption name fails before any training
    stem = Path(args.config).stem
    jobs = []
    labels = []
    for entry in args.methods:
        method, config, implied = method_config(args.config, entry)
        labels.append(method)
        for seed in range(args.seeds):
            cfg = load_config(config, args.overrides + implied + [f"seed={seed}", f"run_name={stem}-{method}-s{seed}"])
            run_dir = Path(cfg.output_dir) / cfg.run_name
            jobs.append((method, seed, cfg, run_dir, plan_run(cfg, run_dir, args.reuse)))

    from nvpt.engine.run import run_training

    if len(set(labels)) != len(labels):
        raise NVPTError(f"--methods gives two entries the same label: {' '.join(labels)}")
    results: dict[str, list[dict]] = {m: [] for m in labels}
    for i, (method, seed, cfg, run_dir, action) in enumerate(jobs, 1):
        head = f"[{i}/{len(jobs)}] {method} seed {seed} ..."
        if action == "reuse":
            print(f"{head} reused {run_dir}", flush=True)
        else:
            print(f"{head} {'resuming' if action == 'resume' else 'training'} {run_dir}", flush=True)
            if action == "resume":
                cfg.train["resume"] = str(run_dir)
            start = time.time()
            run_training(cfg, config_path=args.config, log=lambda msg: print(textwrap.indent(msg, "    "), flush=True))
            print(f"{head} done in {time.time() - start:.0f} s", flush=True)
        try:
            results[method].append(json.loads((run_dir / "results.json").read_text()))
        except (OSError, ValueError) as exc:
            raise NVPTError(f"cannot read {run_dir / 'results.json'}: {str(exc).splitlines()[0]}") from None

    comp = compare_runs(results, reference=args.reference)
    out = Path(args.out) if args.out else Path(base.output_dir) / f"compare-{stem}"
    table = summary_markdown(comp) + "\n" + family_markdown(comp) + "\n" + comparison_markdown(comp)
    write_json({**comp, "config": str(args.config), "overrides": args.overrides,
                "runs": {m: [str(job[3]) for job in jobs if job[0] == m] for m in labels}},
               out / "comparison.json")
    atomic_write_text(out / "comparison.md", f"# {stem}: {' vs '.join(labels)}\n\n{table}")
    plots = plot_comparison(comp, out / "comparison")
    print(table, end="")
    print(f"wrote {out / 'comparison.md'}, comparison.json, {', '.join(p.name for p in plots)}")


if __name__ == "__main__":
    sys.exit(run_main(main))
