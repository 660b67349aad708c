"""Offline demo: Spike-NVPT against VPT-deep on real texture photographs, clean and noisy.

    make demo                 # or: python tools/demo.py [--methods spike_nvpt vpt_deep] [--fresh]

Both methods tune the same small ViT (pre-trained by this project on procedurally generated
images and shipped in nvpt/assets/, see DEMO_BACKBONE.md there) on 20 classes of CC0 texture photographs, then are evaluated on
held-out image regions, clean and under Gaussian noise (the same noisy images for both).
Finished runs in runs/demo/ are reused; --fresh retrains.
"""
import shutil
import sys
import time
from pathlib import Path

import _bootstrap  # noqa: F401

from nvpt.cli import parser, run_main
from nvpt.config import METHODS, load_config
from nvpt.pipeline import run_training
from nvpt.errors import NVPTError
from nvpt.robustness.corruptions import CORRUPTION_VERSION, corruption_version
from nvpt.robustness.report import side_by_side_markdown
from nvpt.robustness.schema import read_summary

ROOT = Path(__file__).resolve().parent.parent
LABELS = {"spike_nvpt": "Spike-NVPT", "vpt_deep": "VPT-deep", "vpt_shallow": "VPT-shallow", "linear": "Linear",
          "full": "Full FT"}


def main(argv):
    p = parser("Offline demo: Spike-NVPT vs VPT-deep on real textures, clean and under Gaussian noise.")
    p.add_argument("--methods", nargs="+", default=["spike_nvpt", "vpt_deep"], help=f"any of {', '.join(METHODS)}")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fresh", action="store_true", help="retrain even when runs/demo holds finished runs")
    p.add_argument("overrides", nargs="*", help="key=value config overrides for every method")
    args = p.parse_args(argv)
    unknown = [m for m in args.methods if m not in METHODS]
    if unknown:
        raise NVPTError(f"unknown method {unknown[0]!r}; choose from {', '.join(METHODS)}")

    summaries, start = {}, time.time()
    for i, method in enumerate(args.methods, 1):
        config = ROOT / "configs" / "demo" / f"{method}.yaml"
        cfg = load_config(config, [f"seed={args.seed}", *args.overrides])
        run_dir = Path(cfg.output_dir) / f"{method}-s{args.seed}"
        if args.fresh and run_dir.exists():
            shutil.rmtree(run_dir)
        if (run_dir / "results.json").is_file():
            stored = read_summary(run_dir / "results.json", "pass --fresh to retrain it")
            if corruption_version(stored) != CORRUPTION_VERSION:
                raise NVPTError(f"{run_dir} holds results of corruption code version {corruption_version(stored)} "
                                f"(this code makes {CORRUPTION_VERSION}: other noisy images); pass --fresh to retrain it")
            print(f"[{i}/{len(args.methods)}] {LABELS[method]}: reusing {run_dir} (pass --fresh to retrain)")
            summaries[LABELS[method]] = stored
            continue
        resume = [f"train.resume={run_dir}"] if (run_dir / "config.yaml").is_file() else []  # unfinished run
        cfg = load_config(config, [f"seed={args.seed}", f"run_name={run_dir.name}", *resume, *args.overrides])
        print(f"[{i}/{len(args.methods)}] training {LABELS[method]} ({config.relative_to(ROOT)}) ...", flush=True)
        result = run_training(cfg, config_path=config)
        summaries[LABELS[method]] = result.summary

    print(f"\nTop-1 accuracy (%) on held-out texture regions, clean and with Gaussian noise of std sigma "
          f"on [0,1] pixels ({time.time() - start:.0f} s):\n")
    print(side_by_side_markdown(summaries))
    if "Spike-NVPT" in summaries and "VPT-deep" in summaries:
        gain = summaries["Spike-NVPT"]["mean_corrupted"] - summaries["VPT-deep"]["mean_corrupted"]
        print(f"\nSpike-NVPT - VPT-deep, mean over the noisy sets: {gain:+.2f} points (one seed; "
              "tools/compare.py gives means and confidence intervals over seeds)")


if __name__ == "__main__":
    sys.exit(run_main(main))
