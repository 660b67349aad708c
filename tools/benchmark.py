"""Speed and memory of Spike-NVPT against VPT and the bare backbone, all in one process.

    python tools/benchmark.py configs/dtd.yaml [key=value ...] [--batch-size 64] [--repeats 15]
        [--warmup 3] [--sfl-batches 1 8 64] [--time-steps 4 8] [--out FILE.json] [--device auto] [--threads 1]

Prints the medians, ratios and PASS/FAIL of the targets and writes them all to --out (JSON).
How it measures, and the targets: nvpt/benchmark.py and docs/performance.md.

    python tools/benchmark.py configs/demo/base.yaml --corruptions [NAME ...] --threads 2

times the corruption suite instead (default all 19 corruptions at the config's eval.severities)
on the config's test set; target: <= 300 s for the demo's 800 test images on 2 cores.

    python tools/benchmark.py --eval [--eval-images 16] [--forward-images 4] [--loader-images 16] [--out FILE]

(`make benchmark-eval`) times the evaluation pipeline per set (corrupt + forward, demo ViT and ViT-B/16), the
loader (cached and uncached) and checkpoint writes, against commit 5fb576b's code in the same process, and
writes the figures nvpt/cost.py reads (default docs/performance/benchmark_eval.json). Logic: nvpt/benchmark_eval.py.
"""
import json
import sys
from pathlib import Path

import _bootstrap  # noqa: F401
import torch

from nvpt.benchmark import BenchmarkArgs, corruption_suite_benchmark, report, resolve_device, run_benchmark
from nvpt.cli import finite_float, parser, run_main
from nvpt.engine.checkpoint import atomic_write_text
from nvpt.errors import NVPTError
from nvpt.outputs import check_output


def main(argv):
    defaults = BenchmarkArgs(config="")
    p = parser("Benchmark Spike-NVPT against VPT and the bare backbone (speed, memory, SFL scaling).")
    p.add_argument("config", nargs="?", help="YAML config, e.g. configs/demo/spike_nvpt.yaml (not with --eval)")
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides, e.g. prompt.length=10")
    p.add_argument("--batch-size", type=int, default=None, help="images per batch (default: data.batch_size)")
    p.add_argument("--repeats", type=int, default=defaults.repeats, help="timed repeats per model (medians are reported)")
    p.add_argument("--warmup", type=int, default=defaults.warmup, help="untimed warm-up calls per model")
    p.add_argument("--sfl-batches", type=int, nargs="+", default=defaults.sfl_batches, help="batch sizes for the SFL time table")
    p.add_argument("--time-steps", type=int, nargs="+", default=defaults.time_steps, help="SFL time steps T for the training comparison")
    p.add_argument("--min-repeat-s", type=finite_float, default=defaults.min_repeat_s, help="a repeat makes enough calls to last at least this long")
    p.add_argument("--out", default=None, help="JSON output (default: runs/benchmark/<config>-<device>.json)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's, i.e. OMP_NUM_THREADS)")
    p.add_argument("--weights", action="store_true", help="load the config's backbone weights (default: random init)")
    p.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    p.add_argument("--corruptions", nargs="*", default=None, metavar="NAME",
                   help="time the corruption suite on the config's test set instead (names or groups; none: all)")
    p.add_argument("--eval", action="store_true", help="time the evaluation and input pipelines instead "
                   "(make benchmark-eval; writes docs/performance/benchmark_eval.json unless --out)")
    p.add_argument("--eval-images", type=int, default=16, help="--eval: 224-px images corrupted per set (default 16)")
    p.add_argument("--forward-images", type=int, default=4, help="--eval: ViT-B/16 images per forward (default 4)")
    p.add_argument("--loader-images", type=int, default=16, help="--eval: JPEGs per loader timing (default 16)")
    p.add_argument("--no-baseline", action="store_true", help="--eval: do not time commit 5fb576b's code")
    p.add_argument("--eval-sets", choices=("paper", "all"), default="paper",
                   help="--eval: the sets of make paper (default) or all 19 corruptions x 5 severities too")
    args = p.parse_args(argv)
    if args.eval:
        return eval_main(args)
    if not args.config:
        raise NVPTError("the following arguments are required: config (e.g. configs/dtd.yaml), or --eval")
    bench = BenchmarkArgs(args.config, args.overrides, args.batch_size, args.repeats, args.warmup, args.sfl_batches,
                          args.time_steps, args.min_repeat_s, args.weights)
    bench.check()
    if args.threads is not None and args.threads < 1:
        raise NVPTError("--threads must be >= 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    kind = "-corruptions" if args.corruptions is not None else ""
    out = Path(args.out) if args.out else Path("runs/benchmark") / f"{Path(args.config).stem}{kind}-{device.type}.json"
    check_output(out, inputs=[args.config], what="--out")  # before the timing starts
    if args.corruptions is not None:
        result = corruption_suite_benchmark(args.config, args.overrides, args.corruptions, args.weights,
                                            args.batch_size, device)
        text, passed = result["report"], result["pass"]
    else:
        result = run_benchmark(bench, device)
        text, passed = report(result), result["all_pass"]
    print(text)
    atomic_write_text(out, json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")
    return 1 if args.strict and not passed else 0


def eval_main(args):
    from nvpt.benchmark_eval import DEFAULT_OUT, EvalBenchArgs, eval_benchmark, eval_markdown, eval_report

    if args.config:
        raise NVPTError("--eval takes no config (it times the demo ViT and ViT-B/16 of configs/)")
    if args.threads is not None and args.threads < 1:
        raise NVPTError("--threads must be >= 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    bench = EvalBenchArgs(args.eval_images, args.forward_images, args.loader_images, args.repeats if args.repeats != 10
                          else 3, baseline=not args.no_baseline, sets=args.eval_sets)
    bench.check()
    result = eval_benchmark(bench, resolve_device(args.device), log=lambda msg: print(msg, flush=True))
    print(eval_report(result))
    out = Path(args.out) if args.out else DEFAULT_OUT
    atomic_write_text(out, json.dumps(result, indent=1) + "\n")
    atomic_write_text(out.with_suffix(".md"), "# make benchmark-eval\n\n" + eval_markdown(result))
    print(f"wrote {out} and {out.with_suffix('.md').name}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
