"""The paper's experiment in one command: Spike-NVPT, VPT-deep, linear and full on DTD and the VTAB-1k
natural tasks torchvision downloads (ViT-B/16 IN-21k, 3 seeds, clean + noise with the ImageNet-C constants).

    python tools/reproduce_paper.py                     # or: make paper (needs internet for data and weights)
    python tools/reproduce_paper.py --estimate-only     # the plan and its estimated GPU time, nothing trains
    python tools/reproduce_paper.py data.num_workers=12 --tasks dtd svhn --seeds 3
    python tools/reproduce_paper.py --tables-only       # results.md from the comparisons finished so far
    python tools/reproduce_paper.py --benchmark vtab    # VTAB-1k's 19 tasks (fgvc: the 5 FGVC sets; all: both),
                                                        # base_lr x weight_decay chosen on val200 first (nvpt/selection.py)
    python tools/reproduce_paper.py --benchmark all --estimate-only   # the whole plan with the grid and its estimate
    python tools/reproduce_paper.py --workers 4         # 4 worker processes (default: one per visible GPU)
    python tools/reproduce_paper.py --shard $SLURM_ARRAY_TASK_ID/8   # runs i, i+8, ... of the plan (1-based)

Prints the runs (finished, to resume, to train) and the estimated time before anything starts;
stopped and restarted it reuses finished runs and resumes unfinished ones. Workers (and shards sharing
--out) claim each run with a lock file beside its folder; a claim left by a dead process on the same
host is reclaimed, one from another host is removed with --break-locks (nvpt/engine/claims.py). Writes <out>/compare-<task>/
(comparison.md/json/png per task) and <out>/results.md. The logic is nvpt/paper.py.
"""
import sys
from pathlib import Path

import _bootstrap  # noqa: F401

from nvpt.cli import finite_float, parser, run_main
from nvpt.config import METHODS
from nvpt.cost import CPU_FIGURES, GPU_FIGURES, Assumptions, with_figures
from nvpt.errors import NVPTError
from nvpt.paper import METHODS as PAPER_METHODS
from nvpt.paper import REFERENCE, SEEDS, TASKS, reproduce
from nvpt.schedule import parse_shard
from nvpt.selection import reproduce_benchmark
from nvpt.suites import BENCHMARKS


def main(argv):
    default = Assumptions()
    p = parser("Run the paper's comparison on the VTAB-1k natural tasks (train, resume or collect), then write tables.")
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides for every run, e.g. data.num_workers=12")
    p.add_argument("--benchmark", choices=BENCHMARKS, default=None,
                   help="the paper-scale benchmark: VTAB-1k's 19 tasks, the 5 FGVC data sets or all, each task's "
                        "base_lr x weight_decay chosen on its validation split first; writes <out>/benchmark.md/.csv/.png")
    p.add_argument("--grid-lrs", nargs="+", type=finite_float, default=None, metavar="LR",
                   help="--benchmark: base learning rates of the grid (default: the VPT reference's, nvpt/suites.py)")
    p.add_argument("--grid-wds", nargs="+", type=finite_float, default=None, metavar="WD",
                   help="--benchmark: weight decays of the grid (default: 0.01 0.001 0.0001 0)")
    p.add_argument("--tasks", nargs="+", default=None, metavar="TASK",
                   help=f"tasks ({', '.join(TASKS)}) or config files; with --benchmark: some of its tasks; default: all")
    p.add_argument("--methods", nargs="+", default=list(PAPER_METHODS), metavar="METHOD",
                   help=f"methods ({', '.join(METHODS)}); default: {' '.join(PAPER_METHODS)}")
    p.add_argument("--seeds", type=int, default=SEEDS, metavar="N", help=f"seeds 0..N-1 (default {SEEDS})")
    p.add_argument("--out", default="runs/paper", help="folder for the runs and tables (default runs/paper)")
    p.add_argument("--estimate-only", action="store_true", help="print the plan and the estimated GPU time, train nothing")
    p.add_argument("--tables-only", action="store_true", help="write results.md from the finished comparisons, train nothing")
    p.add_argument("--mfu", type=finite_float, help="estimate: share of the GPU's peak sustained (default: measured by "
                   "tools/gpu_check.sh, else 0.35 assumed)")
    p.add_argument("--peak-tflops", type=finite_float, default=default.peak_tflops,
                   help=f"estimate: the GPU's dense bf16 peak in TFLOP/s ({default.peak_tflops:g}, an H200)")
    p.add_argument("--jpeg-ms", type=finite_float, help="estimate: CPU ms per JPEG image uncached (default: measured by "
                   "make benchmark-eval)")
    p.add_argument("--cached-ms", type=finite_float, help="estimate: CPU ms per cached image (default: measured)")
    p.add_argument("--array-ms", type=finite_float, default=default.array_ms,
                   help=f"estimate: CPU ms per in-memory image ({default.array_ms:g})")
    p.add_argument("--gpu-corrupt-ms", type=finite_float, help="estimate: GPU ms per 224-px image and noisy set "
                   "(default: measured by tools/gpu_check.sh, else assumed)")
    p.add_argument("--epoch-s", type=finite_float, default=default.epoch_s,
                   help=f"estimate: fixed seconds per epoch besides the images ({default.epoch_s:g})")
    p.add_argument("--figures", default=str(CPU_FIGURES), metavar="JSON",
                   help="estimate: the CPU figures of make benchmark-eval (default docs/performance/benchmark_eval.json)")
    p.add_argument("--gpu-figures", default=str(GPU_FIGURES), metavar="JSON",
                   help="estimate: the GPU figures of tools/gpu_check.sh (default docs/performance/gpu_check.json; "
                        "absent: the GPU figures are assumptions)")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="worker processes pulling runs from the plan (default: one per visible GPU, 1 without)")
    p.add_argument("--shard", metavar="I/N", help="only runs I, I+N, I+2N, ... of the plan (1-based; a SLURM array)")
    p.add_argument("--break-locks", action="store_true",
                   help="delete every claim (lock file) of the plan first: only when no other job of it runs")
    args = p.parse_intermixed_args(argv)
    shard = parse_shard(args.shard)
    given = [v for v in (args.peak_tflops, args.jpeg_ms, args.cached_ms, args.array_ms, args.gpu_corrupt_ms)
             if v is not None]
    if (args.mfu is not None and not 0 < args.mfu <= 1) or min(given) <= 0 or args.epoch_s < 0:
        raise NVPTError("--mfu must be in (0, 1]; --peak-tflops, --jpeg-ms, --cached-ms, --array-ms and "
                        "--gpu-corrupt-ms must be > 0, --epoch-s >= 0")
    if args.estimate_only and args.tables_only:
        raise NVPTError("--estimate-only and --tables-only exclude each other")
    assume = with_figures(Assumptions(args.peak_tflops, args.mfu, args.jpeg_ms, args.array_ms, args.cached_ms,
                                      args.epoch_s, args.gpu_corrupt_ms), Path(args.figures), Path(args.gpu_figures))
    log = lambda msg: print(msg, flush=True)  # noqa: E731
    if args.benchmark:
        if args.workers is not None or shard is not None or args.break_locks:
            raise NVPTError("--workers, --shard and --break-locks run the paper's tasks; --benchmark runs one process "
                            "for now: drop them, or run several --benchmark processes with disjoint --tasks")
        reproduce_benchmark(args.benchmark, args.methods, args.seeds, args.overrides, Path(args.out), REFERENCE, assume,
                            args.estimate_only, args.tables_only, args.grid_lrs, args.grid_wds, args.tasks, log=log)
        return
    if args.grid_lrs or args.grid_wds:
        raise NVPTError("--grid-lrs and --grid-wds need --benchmark")
    reproduce(args.tasks or list(TASKS), args.methods, args.seeds, args.overrides, Path(args.out), assume,
              args.estimate_only, args.tables_only, log=log, workers=args.workers, shard=shard,
              break_locks=args.break_locks)


if __name__ == "__main__":
    sys.exit(run_main(main))
