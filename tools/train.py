"""Train one method on one dataset, then evaluate it clean and under noise.

    python tools/train.py configs/dtd.yaml [key=value ...]
    torchrun --nproc_per_node=8 tools/train.py configs/dtd.yaml
"""
import sys

import _bootstrap  # noqa: F401

from nvpt.cli import parser, run_main
from nvpt.config import load_config
from nvpt.pipeline import run_training


def main(argv):
    p = parser("Train Spike-NVPT or a baseline; writes a run folder with metrics, checkpoints and results.")
    p.add_argument("config", help="YAML config, e.g. configs/dtd.yaml")
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides, e.g. train.epochs=10")
    args = p.parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    run_training(cfg, config_path=args.config)


if __name__ == "__main__":
    sys.exit(run_main(main))
