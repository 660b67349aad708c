"""Pre-train a backbone offline (e.g. on procedurally generated images) and export its timm weights.

    python tools/pretrain.py configs/demo/backbone.yaml [key=value ...]
    python tools/pretrain.py configs/demo/backbone.yaml train.resume=runs/pretrain/backbone-full-s0
    python tools/pretrain.py configs/demo/backbone.yaml --preview docs/figures/synthetic_classes.png

Writes a run folder like tools/train.py (config, metrics.jsonl, resumable checkpoints) and, last,
<run folder>/backbone.safetensors for model.pretrained_file.
"""
import sys

import _bootstrap  # noqa: F401

from nvpt.cli import parser, run_main
from nvpt.config import load_config
from nvpt.outputs import check_output
from nvpt.pretrain import pretrain, save_preview


def main(argv):
    p = parser("Pre-train every weight of a backbone (prompt.method=full) and export it as .safetensors.")
    p.add_argument("config", help="YAML config, e.g. configs/demo/backbone.yaml")
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides, e.g. train.epochs=10")
    p.add_argument("--preview", metavar="PNG", help="only write a contact sheet of the config's first 10 classes "
                   "(data.name=synthetic), 8 training images each, and exit")
    args = p.parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    if args.preview:
        check_output(args.preview, what="--preview")
        save_preview(cfg, args.preview)
        print(f"wrote {args.preview}")
        return
    pretrain(cfg, config_path=args.config)


if __name__ == "__main__":
    sys.exit(run_main(main))
