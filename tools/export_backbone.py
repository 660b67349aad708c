"""Write a trained `full` run's backbone (every timm weight) to a .safetensors file for model.pretrained_file.

    python tools/export_backbone.py runs/pretrain/backbone-full-s0 nvpt/assets/demo_backbone.safetensors
"""
import sys

import _bootstrap  # noqa: F401

from nvpt.cli import parser, run_main
from nvpt.pretrain import export_backbone


def main(argv):
    p = parser("Export the backbone of a `full` run as plain timm weights (safetensors).")
    p.add_argument("run", help="run folder (its best checkpoint) or checkpoint file")
    p.add_argument("out", help="output .safetensors path")
    args = p.parse_args(argv)
    path, count, digest = export_backbone(args.run, args.out)
    print(f"wrote {path}: {count:,} values, sha256 {digest}")


if __name__ == "__main__":
    sys.exit(run_main(main))
