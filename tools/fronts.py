"""Accuracy-robustness fronts (docs/results.md, issue 22): sweep, tabulate, and the pre-registered final.

    python tools/fronts.py sweep configs/experiments/textures_fronts.yaml eval.split=val --methods vpt_deep spike_nvpt \
        --lrs 0.25 0.5 1 2 4 --lengths 8 32 --seeds 3 --out runs/study/fronts
    python tools/fronts.py table runs/study/fronts/*/*/comparison.json --out docs/results/study/fronts
    python tools/fronts.py final configs/experiments/textures_fronts.yaml eval.split=test --sweep runs/study/fronts \
        --target 95 --lengths 8 32 --lrs 0.25 0.5 1 2 4 --seeds 5 --out runs/study/fronts_final --md docs/results/study/fronts_final.md

sweep: every method x learning rate x prompt length through tools/compare.py's machinery, one folder per point
(<out>/<method>/lr<lr>-p<length>); finished runs are reused, unfinished ones resumed.
table: VPT-deep's front (a line in logit space, Taori et al. 2020) per robust measure (mCA over the noise sets,
mCA over the full corruption suite), every setting's effective robustness with a 95% interval, the points table
(<out>.md, <out>.json) and the figure (<out>.png/.pdf). The statistics: nvpt/robustness/fronts.py.
final: per prompt length, each method at the setting whose mean clean validation accuracy is closest to --target
(docs/protocol.md), trained and evaluated with the given overrides (eval.split=test), paired by seed; with
--methods METHOD (one) that method's runs only, for a second core, before the call with both writes the markdown.
"""
import json
import sys
from pathlib import Path

import _bootstrap  # noqa: F401

from nvpt.cli import parser, run_main
from nvpt.engine.checkpoint import atomic_write_text
from nvpt.errors import NVPTError
from nvpt.robustness.fronts import fit_fronts, front_rows, fronts_markdown, sweep_settings
from nvpt.robustness.report import write_json


def read_comparisons(files: list[str]) -> dict[str, dict]:
    """{label: comparison.json} labelled <method>/<point> by the last two folders."""
    comps = {}
    for name in files:
        path = Path(name)
        try:
            comps[f"{path.parent.parent.name}/{path.parent.name}"] = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise NVPTError(f"cannot read {path}: {str(exc).splitlines()[0]} "
                            "(pass comparison.json files of tools/fronts.py sweep or tools/compare.py)") from None
    return comps


def table(args) -> None:
    settings = sweep_settings(read_comparisons(args.files))
    fronts = fit_fronts(settings, args.reference)
    rows = front_rows(settings, fronts)
    text = (f"# {args.title}\n\n" if args.title else "") + fronts_markdown(rows, fronts)
    out = Path(args.out)
    atomic_write_text(out.with_name(out.name + ".md"), text)
    write_json({"reference": args.reference, "fronts": fronts, "rows": rows}, out.with_name(out.name + ".json"))
    from nvpt.viz.fronts import plot_fronts

    plots = plot_fronts(rows, fronts, out, args.title)
    print(text, end="")
    print(f"wrote {out}.md, {out}.json, {', '.join(p.name for p in plots)}")


def build_parser(command: str):
    """The parser of one subcommand (each parsed with parse_intermixed_args: overrides may follow options)."""
    what = {"sweep": "Train or collect every method x learning rate x prompt length point of a sweep.",
            "table": "VPT-deep's front, each setting's effective robustness, the points table and the figure.",
            "final": "The pre-registered final: each method at the clean-accuracy target, per prompt length."}
    p = parser(what[command])
    p.prog = f"fronts.py {command}"
    if command == "sweep":
        p.add_argument("config", help="YAML config of the task, e.g. configs/experiments/textures_fronts.yaml")
        p.add_argument("overrides", nargs="*", help="key=value overrides for every run, e.g. eval.split=val")
        p.add_argument("--methods", nargs="+", default=["vpt_deep", "spike_nvpt"], metavar="METHOD")
        p.add_argument("--lrs", nargs="+", required=True, metavar="LR", help="base learning rates (train.base_lr)")
        p.add_argument("--lengths", nargs="+", type=int, required=True, metavar="P", help="prompt lengths")
        p.add_argument("--seeds", type=int, default=3, metavar="N")
        p.add_argument("--out", required=True, metavar="DIR")
    elif command == "table":
        p.add_argument("files", nargs="+", help="comparison.json files of the sweep's points")
        p.add_argument("--reference", default="vpt_deep", help="the method whose front is fit (default vpt_deep)")
        p.add_argument("--out", required=True, metavar="PREFIX", help="writes PREFIX.md, .json, .png, .pdf")
        p.add_argument("--title", default="", help="heading of the markdown and the figure")
    else:
        p.add_argument("config", help="the sweep's task config")
        p.add_argument("overrides", nargs="*", help="key=value overrides for every run (eval.split=test)")
        p.add_argument("--sweep", required=True, metavar="DIR", help="the sweep's folder (its points' comparison.json)")
        p.add_argument("--target", type=float, required=True, metavar="ACC", help="clean accuracy target (%%)")
        p.add_argument("--lengths", nargs="+", type=int, required=True, metavar="P")
        p.add_argument("--lrs", nargs="+", required=True, metavar="LR",
                       help="the sweep's learning rates: every one must be there (a partial sweep is refused)")
        p.add_argument("--methods", nargs="+", default=["vpt_deep", "spike_nvpt"], metavar="METHOD",
                       help="the first is the reference; one method trains its runs only (a part, no markdown)")
        p.add_argument("--seeds", type=int, default=5, metavar="N")
        p.add_argument("--out", required=True, metavar="DIR")
        p.add_argument("--md", required=True, metavar="FILE", help="the final's markdown")
    return p


COMMANDS = ("sweep", "table", "final")


def main(argv):
    if not argv or argv[0] not in COMMANDS:
        raise NVPTError(f"usage: tools/fronts.py {{{','.join(COMMANDS)}}} ...; got {argv[0] if argv else 'nothing'!r}")
    command = argv[0]
    args = build_parser(command).parse_intermixed_args(argv[1:])
    log = lambda msg: print(msg, flush=True)  # noqa: E731
    if command == "sweep":
        from nvpt.comparison import run_sweep

        files = run_sweep(args.config, args.overrides, args.methods, args.lrs, args.lengths, args.seeds, args.out,
                          log=log)
        log(f"{len(files)} points in {args.out}")
    elif command == "table":
        table(args)
    else:
        from nvpt.comparison import run_final

        files = sorted(str(f) for f in Path(args.sweep).glob("*/*/comparison.json"))
        if not files:
            raise NVPTError(f"--sweep {args.sweep} holds no <method>/<point>/comparison.json: run the sweep first")
        settings = sweep_settings(read_comparisons(files))
        text = run_final(args.config, args.overrides, settings, args.target, args.lengths, args.lrs, args.seeds,
                         args.out, methods=tuple(args.methods), log=log)
        if text is None:
            log(f"{args.methods[0]}'s runs are in {args.out}; the call with both methods writes {args.md}")
            return
        atomic_write_text(Path(args.md), text)
        log(f"wrote {args.md}")


if __name__ == "__main__":
    sys.exit(run_main(main))
