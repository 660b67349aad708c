"""Where one method stands among the others of a tools/compare.py comparison (docs/protocol.md, the PEFT comparison):
its rank by mCA, its paired clean and mCA gains over each other method, the upper-left frontier of (trainable
parameters, mCA), the most robust method per parameter, and each method's deployed forward FLOPs per image.

    python tools/standing.py runs/experiments/peft/compare-peft/comparison.json --method spike_nvpt --out standing.md

The logic is nvpt/robustness/standing.py; the FLOPs are counted on each method's first run, deployed.
"""
import sys
from pathlib import Path

import _bootstrap  # noqa: F401

from nvpt.cli import parser, run_main
from nvpt.engine.checkpoint import atomic_write_text
from nvpt.outputs import check_output
from nvpt.robustness.schema import read_comparison
from nvpt.robustness.standing import deployed_flops, standing, standing_markdown


def main(argv):
    p = parser("Rank one method among the others of a comparison.json (tools/compare.py): mCA rank, paired gains, "
               "the most robust method per trainable parameter.")
    p.add_argument("comparison", help="a comparison.json of tools/compare.py (its runs are read for the FLOPs)")
    p.add_argument("--method", default="spike_nvpt", help="the method whose standing is reported")
    p.add_argument("--out", help="also write the markdown to this file")
    args = p.parse_args(argv)
    if args.out:
        check_output(args.out, inputs=[args.comparison], what="--out")
    comp = read_comparison(args.comparison, "pass the comparison.json tools/compare.py writes (rerun it to rewrite it)")
    params = comp.get("trainable_params") or {}
    text = standing_markdown(standing(comp, params, args.method), comp, params, deployed_flops(comp))
    if args.out:
        atomic_write_text(Path(args.out), text)
    print(text, end="")


if __name__ == "__main__":
    sys.exit(run_main(main))
