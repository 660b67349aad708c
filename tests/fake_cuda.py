"""A fake CUDA device on a CPU-only machine, and a recorder of CPU work, for tests of GPU code paths.

torch 2.14's FakeTensorMode (torch._subclasses.fake_tensor) makes CUDA tensors without a CUDA
runtime or a GPU: inside the mode, `torch.empty(..., device="cuda")` returns a FakeTensor on
cuda:0 (shapes, dtypes and devices only, no data), and every op runs through its meta kernel,
which raises, as CUDA would, when a CPU tensor meets a CUDA one in an op that needs one device
("Expected all tensors to be on the same device"). No flag or patching of torch.cuda is needed
(checked on this CPU-only machine: torch.cuda.is_available() is False). A host read of device
data (.item(), .tolist(), bool(tensor), torch.equal, .numpy(), a data-dependent shape such as
nonzero or boolean indexing) has no data to read and raises DataDependentOutputException (or
DynamicOutputShapeException, or a RuntimeError about a data pointer).
`allow_non_fake_inputs=True` lets real CPU tensors made before the mode (module constants,
model weights) enter it; they are converted on use.

CPUWork, a TorchDispatchMode pushed inside the fake mode, sees every op with its real inputs
and outputs (fake tensors carry their device) and records each one that reads or makes a CPU
tensor of at least `limit` elements: image-sized work on the host.
"""
from __future__ import annotations

import contextlib

import torch
from torch._subclasses.fake_tensor import (
    DataDependentOutputException,
    DynamicOutputShapeException,
    FakeTensorMode,
)
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

HOST_READS = (DataDependentOutputException, DynamicOutputShapeException)


class CPUWork(TorchDispatchMode):
    """Records ops that read or make a CPU tensor with >= limit elements (while `active`)."""

    def __init__(self, limit: int):
        super().__init__()
        self.limit = limit
        self.active = True
        self.hits: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.active:
            for role, value in (("in", (args, kwargs)), ("out", out)):
                for t in tree_leaves(value):
                    if isinstance(t, torch.Tensor) and t.device.type == "cpu" and t.numel() >= self.limit:
                        self.hits.append(f"{func} {role} cpu {tuple(t.shape)}")
        return out


@contextlib.contextmanager
def fake_cuda(limit: int | None = None):
    """Inside: tensors made with device='cuda' are fake CUDA tensors. Yields a CPUWork recorder
    (limit None: records nothing)."""
    # TorchScript functions (SpikingJelly's IF kernels) called in the mode would otherwise be profiled and
    # specialised for CUDA, and their next real CPU call, in a later test, would try to load libcuda
    with torch.jit.optimized_execution(False), FakeTensorMode(allow_non_fake_inputs=True):
        recorder = CPUWork(limit if limit is not None else 2 ** 62)
        with recorder:
            yield recorder


def is_host_read(error: BaseException) -> bool:
    """True for the errors a fake tensor raises when its data is read on the host."""
    text = str(error)
    return (isinstance(error, HOST_READS) or "data pointer" in text or ".numpy()" in text
            or "data-dependent" in text.lower())
