"""Speed and memory of Spike-NVPT against VPT and the bare backbone, all in one process.

    python tools/benchmark.py configs/dtd.yaml [key=value ...] [--batch-size 64] [--repeats 15]
        [--warmup 3] [--sfl-batches 1 8 64] [--time-steps 4 8] [--out FILE.json] [--device auto] [--threads 1]

Prints the medians, ratios and PASS/FAIL of the targets and writes them all to --out (JSON).
How it measures, and the targets: nvpt/benchmark.py and docs/performance.md.

    python tools/benchmark.py configs/demo/base.yaml --corruptions [NAME ...] --threads 2

times the corruption suite instead (default all 19 corruptions at the config's eval.severities)
on the config's test set; target: <= 300 s for the demo's 800 test images on 2 cores.
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
    p.add_argument("config", help="YAML config, e.g. configs/demo/spike_nvpt.yaml")
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
    args = p.parse_args(argv)
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


if __name__ == "__main__":
    sys.exit(run_main(main))
