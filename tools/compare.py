"""Train (or collect) several methods over several seeds and compare them with confidence intervals.

    python tools/compare.py configs/demo/base.yaml --methods spike_nvpt vpt_deep --seeds 3
    python tools/compare.py configs/dtd.yaml train.epochs=50 --methods spike_nvpt vpt_deep vpt_shallow --seeds 5

Run i of method m is <output_dir>/<config stem>-<m>-s<i>, trained with prompt.method=<m>, seed=<i>.
A method's own recipe, when the config folder holds <config stem>_<m>.yaml (e.g. dtd_full.yaml),
is read from that file instead. A --methods entry may also be a YAML file (a variant, e.g. an
study variant in configs/study/): it is labelled by its file name and trained as it says.
With --reuse (the default) a run folder that already holds results.json for the same config
is collected instead of retrained, and an unfinished one is resumed. Writes comparison.md (summary,
per-family means, every set), comparison.json, comparison.png/.pdf (accuracy vs severity per
corruption family) and, with corruptions, comparison_corruptions.png/.pdf (per corruption) to --out
(default <output_dir>/compare-<config stem>). The logic is nvpt/comparison.py.
"""
import argparse
import sys

import _bootstrap  # noqa: F401

from nvpt.cli import parser, run_main
from nvpt.comparison import run_comparison
from nvpt.config import METHODS


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


def main(argv):
    args = build_parser().parse_intermixed_args(argv)
    run_comparison(args.config, args.overrides, args.methods, args.seeds, args.reference, args.reuse, args.out,
                   log=lambda msg: print(msg, flush=True))


if __name__ == "__main__":
    sys.exit(run_main(main))
