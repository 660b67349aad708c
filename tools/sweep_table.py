"""Tabulate several tools/compare.py outputs (the points of a sweep) and pick the best point.

    python tools/sweep_table.py runs/study/vpt_deep/*/comparison.json --by clean
    python tools/sweep_table.py A/comparison.json B/comparison.json --print-best point

Each comparison.json is labelled by its folder name. Prints a markdown table (mean ± std
[95% CI] of clean accuracy and mCA per point and method), the chosen row in bold, or with
--print-best only the chosen row's point (for scripts).
"""
import json
import sys
from pathlib import Path

import _bootstrap  # noqa: F401

from nvpt.cli import parser, run_main
from nvpt.engine.checkpoint import atomic_write_text
from nvpt.errors import NVPTError
from nvpt.robustness.compare import best_row, sweep_markdown, sweep_rows


def main(argv):
    p = parser("Tabulate the points of a sweep (comparison.json files of tools/compare.py) and pick the best.")
    p.add_argument("files", nargs="+", help="comparison.json files, labelled by their folder names")
    p.add_argument("--by", choices=("clean", "mca"), default="clean", help="what the best point maximises")
    p.add_argument("--method", help="consider only this method's rows when picking")
    p.add_argument("--print-best", choices=("point", "row"), help="print only the chosen point (or its row as JSON)")
    p.add_argument("--out", help="also write the markdown table to this file")
    args = p.parse_args(argv)
    comparisons = {}
    for name in args.files:
        path = Path(name)
        try:
            comparisons[path.parent.name] = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise NVPTError(f"cannot read {path}: {str(exc).splitlines()[0]} (pass comparison.json files of tools/compare.py)") from None
    rows = sweep_rows(comparisons)
    pool = [r for r in rows if args.method in (None, r["method"])]
    if not pool:
        raise NVPTError(f"no rows of method {args.method!r} in the given files")
    chosen = best_row(pool, args.by)
    if args.print_best == "point":
        print(chosen["point"])
        return
    if args.print_best == "row":
        print(json.dumps({k: chosen[k] for k in ("point", "method")}))
        return
    table = sweep_markdown(rows, chosen)
    if args.out:
        atomic_write_text(Path(args.out), table)
    print(table, end="")


if __name__ == "__main__":
    sys.exit(run_main(main))
