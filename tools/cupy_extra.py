"""Print the pyproject extra whose CuPy matches this torch's CUDA (gpu or gpu-cu12), or nothing on a machine
without CUDA; the reason goes to stderr. `make gpu` (and `make paper`) installs `.[<extra>]` with it.

    python tools/cupy_extra.py        # -> gpu   (torch built for CUDA 13, a CUDA device visible)
"""
import sys

import _bootstrap  # noqa: F401
import torch

from nvpt.spiking.backend import cupy_extra

if __name__ == "__main__":
    extra, why = cupy_extra(torch.cuda.is_available(), torch.version.cuda)
    print(why, file=sys.stderr)
    print(extra or "")
