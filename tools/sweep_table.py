"""Tabulate several tools/compare.py outputs (the points of a sweep) and pick the best point.

    python tools/sweep_table.py runs/study/vpt_deep/*/comparison.json --by clean
    python tools/sweep_table.py A/comparison.json B/comparison.json --print-best point
    python tools/sweep_table.py runs/study/variants/comparison.json --by mca --min-clean 95.17 --exclude vpt_deep

Each comparison.json is labelled by its folder name (with its parent's where two share one). Prints a markdown table (mean ± std
[95% CI] of clean accuracy and mCA per point and method), the chosen row in bold, or with
--print-best only the chosen row's point (for scripts).
"""
import json
import sys
from pathlib import Path

import _bootstrap  # noqa: F401

from nvpt.cli import finite_float, parser, run_main
from nvpt.engine.checkpoint import atomic_write_text
from nvpt.errors import NVPTError
from nvpt.outputs import check_output
from nvpt.robustness.compare import best_row, sweep_markdown, sweep_rows
from nvpt.robustness.corruptions import check_versions
from nvpt.robustness.schema import read_comparison


def main(argv):
    p = parser("Tabulate the points of a sweep (comparison.json files of tools/compare.py) and pick the best.")
    p.add_argument("files", nargs="+", help="comparison.json files, labelled by their folder names")
    p.add_argument("--by", choices=("clean", "mca"), default="clean", help="what the best point maximises")
    p.add_argument("--method", help="consider only this method's rows when picking")
    p.add_argument("--exclude", nargs="*", default=[], metavar="METHOD", help="never pick these methods' rows")
    p.add_argument("--min-clean", type=finite_float, metavar="ACC",
                   help="pick only among rows whose mean clean accuracy is >= ACC; when none is, the best clean row "
                        "(docs/protocol.md's rule: --by mca --min-clean <VPT-deep's clean - 1.5>)")
    p.add_argument("--print-best", choices=("point", "row"), help="print only the chosen point (or its row as JSON)")
    p.add_argument("--out", help="also write the markdown table to this file")
    args = p.parse_args(argv)
    if args.out:
        check_output(args.out, inputs=args.files, what="--out")
    comparisons = {}
    folders = [Path(name).parent for name in args.files]
    short = [f.name for f in folders]
    for name, folder in zip(args.files, folders):
        path = Path(name)
        label = folder.name if short.count(folder.name) == 1 else f"{folder.parent.name}/{folder.name}"
        comparisons[label] = read_comparison(path, "pass the comparison.json files tools/compare.py writes (rerun it to rewrite a damaged one)")
    check_versions(comparisons, "comparisons")  # comparison.json of one code version each (missing: 1)
    rows = sweep_rows(comparisons)
    pool = [r for r in rows if args.method in (None, r["method"]) and r["method"] not in args.exclude]
    if not pool:
        left = f"of method {args.method}" if args.method else "of any method"
        raise NVPTError(f"no rows {left} left" + (f" after --exclude {' '.join(args.exclude)}" if args.exclude else "")
                        + f" in the given files (methods: {', '.join(dict.fromkeys(r['method'] for r in rows))})")
    eligible = [r for r in pool if args.min_clean is None or r["clean"]["mean"] >= args.min_clean]
    chosen = best_row(eligible, args.by) if eligible else best_row(pool, "clean")
    if args.print_best == "point":
        print(chosen["point"])
        return
    if args.print_best == "row":
        print(json.dumps({"point": chosen["point"], "method": chosen["method"], "clean": chosen["clean"]["mean"],
                          "mca": chosen["mca"]["mean"] if chosen["mca"] else None}))
        return
    table = sweep_markdown(rows, chosen)
    if args.out:
        atomic_write_text(Path(args.out), table)
    print(table, end="")


if __name__ == "__main__":
    sys.exit(run_main(main))
