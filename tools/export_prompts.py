"""Write a Spike-NVPT run's deployed prompts bit-packed (1 bit per element) with its head, in one file.

    python tools/export_prompts.py runs/demo/spike_nvpt-s0 [--out FILE] [key=value ...]

Default output: RUN/prompts-packed.safetensors. Load it with nvpt.export.load_packed (no
SpikingJelly needed). Overrides apply to the run's config, e.g.
model.pretrained_file=weights.safetensors on a machine that cannot reach the hub.
"""
import sys

import _bootstrap  # noqa: F401

from nvpt.cli import parser, run_main
from nvpt.export import describe_sizes, export_packed, read_packed


def main(argv):
    p = parser("Bit-pack a spike_nvpt run's deployed prompts, scale and head into one .safetensors file.")
    p.add_argument("run", help="run folder (or checkpoint file) of a spike_nvpt run")
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides of the run's config")
    p.add_argument("--out", default=None, help="output file (default: RUN/prompts-packed.safetensors)")
    args = p.parse_args(argv)
    info = export_packed(args.run, args.out, args.overrides)
    _, meta, _ = read_packed(info.path)  # read back: the file on disk is what gets reported
    print(f"wrote {info.path}: {describe_sizes(meta['sizes'], meta['prompt_shape'])}")


if __name__ == "__main__":
    sys.exit(run_main(main))
