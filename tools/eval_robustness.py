"""Evaluate trained runs clean and under noise, optionally against a reference run.

    python tools/eval_robustness.py RUN_OR_CHECKPOINT [RUN_OR_CHECKPOINT ...] [options]
    python tools/eval_robustness.py runs/demo/spike_nvpt-s0
    python tools/eval_robustness.py runs/paper/dtd-*-s0      # several runs of one task: one pass over the test set
    python tools/eval_robustness.py RUN --corruptions gaussian_noise shot_noise --severities 1 3 5 \\
        --gaussian-std 0.1 0.2 --reference runs/demo/vpt_deep-s0
    python tools/eval_robustness.py RUN --corruptions all --gaussian-std   # the 19 ImageNet-C corruptions

Unset options take the runs' own `eval.*` config, so with no options the numbers equal each run's
results.json (same code: nvpt.robustness.evaluate). Several runs must share their test data and
evaluation (else a one-line error): each test batch is loaded once, corrupted once per set and scored
by every run, with numbers bit-identical to evaluating the runs one by one. Writes robustness.json /
.csv / .md to --out (default RUN/robustness/; with several runs --out DIR gets DIR/<run name>/) and
prints the tables. The logic is nvpt/robustness/runs.py.
"""
import json
import sys
from pathlib import Path

import _bootstrap  # noqa: F401
import torch

from nvpt.cli import finite_float, parser, run_main
from nvpt.engine.distributed import DistInfo
from nvpt.engine.run import resolve_device
from nvpt.errors import NVPTError
from nvpt.outputs import check_output_folder
from nvpt.robustness.runs import OUT_FILES, check_shared_test_set, evaluate_runs, find_reference, run_entry, \
    same_sets, write_robustness


def build_parser():
    p = parser("Top-1 accuracy of trained runs clean and under each noise corruption; "
               "unset options default to the runs' eval.* config.")
    p.add_argument("runs", nargs="+", metavar="run",
                   help="run folder (uses checkpoint-best.safetensors) or a checkpoint file inside one; several runs "
                        "of one task are evaluated in one pass")
    p.add_argument("--corruptions", nargs="*", metavar="NAME",
                   help="corruption names (gaussian_noise, fog, jpeg_compression, ...), families (noise, blur, "
                        "weather, digital), common (ImageNet-C's 15), extra (its 4 others) or all; "
                        "none: no corruption sets")
    p.add_argument("--severities", nargs="+", type=int, metavar="S", help="severities 1..5 of --corruptions")
    p.add_argument("--gaussian-std", nargs="*", type=finite_float, metavar="SIGMA",
                   help="plain Gaussian noise sigmas on [0,1] images (none: no Gaussian sets)")
    p.add_argument("--table", choices=("auto", "imagenet", "cifar"), help="severity constants (auto: cifar below 64 px)")
    p.add_argument("--noise-seed", type=int, metavar="N", help="seed of the evaluation noise (eval.seed)")
    p.add_argument("--reference", metavar="RUN_OR_JSON",
                   help="diff to this run (its results.json when it has the same sets and test data, "
                        "else evaluated here) or to a results.json / robustness.json file")
    p.add_argument("--out", metavar="DIR", help="output folder (default: RUN/robustness/)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto: cuda when available")
    p.add_argument("--batch-size", type=int, metavar="N",
                   help="evaluation batch size (default: the run's data.eval_batch_size)")
    return p


def eval_overrides(args) -> list[str]:
    """Command-line options as config overrides (JSON lists are valid YAML), checked by load_config."""
    pairs = [("eval.corruptions", args.corruptions), ("eval.severities", args.severities),
             ("eval.gaussian_std", args.gaussian_std), ("eval.corruption_table", args.table),
             ("eval.seed", args.noise_seed), ("data.eval_batch_size", args.batch_size)]
    out = [f"{key}={json.dumps(value)}" for key, value in pairs if value is not None]
    return out + [f"train.device={args.device}"]


def main(argv):
    args = build_parser().parse_args(argv)
    if args.batch_size is not None and args.batch_size < 1:
        raise NVPTError(f"--batch-size must be >= 1, got {args.batch_size}")
    overrides = eval_overrides(args)
    entries = [run_entry(path, overrides) for path in args.runs]
    check_shared_test_set(entries)  # before any evaluation starts
    names = [e.run_dir.name for e in entries]
    if len(entries) > 1 and len(set(names)) < len(names) and args.out:
        raise NVPTError(f"two runs share the folder name {names}: --out DIR would mix their outputs; drop --out")
    outs = [(Path(args.out) / e.run_dir.name if len(entries) > 1 else Path(args.out)) if args.out
            else e.run_dir / "robustness" for e in entries]
    inputs = [args.reference] if args.reference else []
    for out in outs:  # an unwritable --out fails now, not after the evaluation
        check_output_folder(out, OUT_FILES, inputs)
    cfg = entries[0].cfg
    reference, source = find_reference(args.reference, cfg, overrides) if args.reference else (None, None)

    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    device = resolve_device(cfg, DistInfo())
    evaluation = evaluate_runs(entries, device, overrides, reference, show_progress=True)
    summaries, test_images = evaluation.summaries, evaluation.images["test"]
    ref_summary = summaries.pop() if source == "evaluated" else reference
    for entry, summary, out in zip(entries, summaries, outs):
        summary.update(method=entry.cfg.prompt.method, seed=entry.cfg.seed, run=str(entry.run_dir),
                       checkpoint=str(entry.checkpoint), test_images=test_images)
        if ref_summary is not None:
            summary["reference"] = {"path": args.reference, "source": source, "summary": ref_summary}
        caption = f"{entry.cfg.prompt.method} seed {entry.cfg.seed} ({entry.checkpoint})" + \
            (f" vs {args.reference}" if args.reference else "")
        print(write_robustness(summary, out, caption), end="")
        print(f"wrote {out}/robustness.json, robustness.csv, robustness.md")
    if source == "json" and not same_sets(ref_summary, cfg):
        print(f"note: {args.reference} has other sets or noise than this evaluation: differences of means are n/a")


if __name__ == "__main__":
    sys.exit(run_main(main))
