"""Write a trained run's backbone (every timm weight) to a .safetensors file for model.pretrained_file.

    python tools/export_backbone.py runs/demo-backbone/backbone-full-s0 nvpt/assets/demo_backbone.safetensors
"""
import sys

import _bootstrap  # noqa: F401

from nvpt.cli import parser, run_main
from nvpt.engine.checkpoint import atomic_write
from nvpt.engine.restore import load_run
from nvpt.errors import NVPTError


def main(argv):
    p = parser("Export the backbone of a `full` run as plain timm weights (safetensors).")
    p.add_argument("run", help="run folder (its best checkpoint) or checkpoint file")
    p.add_argument("out", help="output .safetensors path")
    args = p.parse_args(argv)
    if not args.out.endswith(".safetensors"):
        raise NVPTError(f"output {args.out} must end in .safetensors")
    loaded = load_run(args.run)
    if loaded.cfg.prompt.method != "full":
        raise NVPTError(f"{args.run} is a {loaded.cfg.prompt.method} run; only a `full` run trains the backbone")
    from pathlib import Path

    from safetensors.torch import save_file

    state = {k: v.contiguous() for k, v in loaded.model.backbone.state_dict().items()}
    meta = {"source": str(loaded.checkpoint), "model": loaded.cfg.model.name, "kwargs": loaded.cfg.model.kwargs or ""}
    atomic_write(Path(args.out), lambda tmp: save_file(state, str(tmp), metadata=meta))
    print(f"wrote {args.out}: {len(state)} tensors, {sum(v.numel() for v in state.values()):,} values")


if __name__ == "__main__":
    sys.exit(run_main(main))
