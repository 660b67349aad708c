"""The one place that picks the SpikingJelly backend and builds IF neurons.

`auto` takes the multi-step CuPy kernel when the prompt tensor is on CUDA and cupy
imports, the pure-torch backend otherwise. SpikingJelly 2.x dropped the `backend`
argument; `make_if_node` adapts so the same code runs on either major version.
"""
from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import warnings

import torch

from nvpt.errors import NVPTError

log = logging.getLogger("nvpt")


@functools.lru_cache(maxsize=None)
def cupy_available() -> bool:
    try:
        import cupy  # noqa: F401
    except Exception:  # ImportError, or a CUDA/driver mismatch raised at import
        return False
    return True


@contextlib.contextmanager
def _quiet_import():
    """torch warns about SpikingJelly's use of torch.jit.script at import: not actionable for users."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=FutureWarning)
        yield


@functools.lru_cache(maxsize=None)
def _if_node_class():
    try:
        with _quiet_import():
            from spikingjelly.activation_based.neuron import IFNode
    except ImportError as exc:
        raise NVPTError(
            f"spike_nvpt training needs SpikingJelly ({exc}); install it with `pip install spikingjelly==0.0.0.0.14` "
            "(a deployed model does not need it)"
        ) from None
    return IFNode


def has_backend_argument() -> bool:
    """True on SpikingJelly 0.0.0.0.x (torch/cupy backends), False on 2.x."""
    return "backend" in inspect.signature(_if_node_class().__init__).parameters


@functools.lru_cache(maxsize=None)
def _log_once(message: str) -> None:
    log.info(message)


def resolve_backend(requested: str, device: torch.device) -> str:
    """'auto' | 'cupy' | 'torch' -> the backend actually used on `device` (logged once)."""
    if requested not in ("auto", "cupy", "torch"):
        raise NVPTError(f"spike.backend must be one of auto, cupy, torch; got {requested!r}")
    cupy_ok = device.type == "cuda" and cupy_available() and has_backend_argument()
    if requested == "cupy" and not cupy_ok:
        why = (
            "the prompts are not on CUDA" if device.type != "cuda"
            else "cupy does not import (pip install cupy-cuda12x or cupy-cuda13x to match your CUDA)" if not cupy_available()
            else "this SpikingJelly has no CuPy backend (use spikingjelly==0.0.0.0.14)"
        )
        raise NVPTError(f"spike.backend=cupy requested but {why}; use spike.backend=auto or torch")
    chosen = "cupy" if (requested in ("auto", "cupy") and cupy_ok) else "torch"
    _log_once(f"Signal Filtering Layer backend: {chosen} (requested {requested}, device {device.type})")
    return chosen


# pyproject.toml's extras, by the CUDA major version torch was built for
CUPY_EXTRAS = {"13": "gpu", "12": "gpu-cu12"}


def cupy_extra(cuda_available: bool, torch_cuda: str | None) -> tuple[str | None, str]:
    """(the pyproject extra whose CuPy matches torch's CUDA, or None, and why) from torch.cuda.is_available() and
    torch.version.cuda: `make gpu` (and `make paper`) installs `.[<extra>]` on a CUDA machine, nothing elsewhere."""
    if not cuda_available:
        return None, "no CUDA device: the Signal Filtering Layer runs on the torch backend, no CuPy needed"
    if not torch_cuda:
        return None, "this torch is not a CUDA build (ROCm or CPU): no CuPy wheel matches it, the SFL runs on torch"
    major = torch_cuda.split(".")[0]
    if major not in CUPY_EXTRAS:
        return None, (f"torch is built for CUDA {torch_cuda}, for which pyproject.toml has no CuPy extra "
                      f"(CUDA {' or '.join(sorted(CUPY_EXTRAS))}): the SFL runs on the torch backend")
    return CUPY_EXTRAS[major], f"torch is built for CUDA {torch_cuda}: installing the CuPy of .[{CUPY_EXTRAS[major]}]"


def run_backend(method: str, spike_filter: str, requested: str, device: torch.device) -> str:
    """The SFL backend a run uses on `device`: cupy or torch for spike_nvpt with the IF filter, 'none' otherwise
    (no integrate-and-fire neurons run). Fails as resolve_backend does for an unavailable spike.backend=cupy."""
    if method == "spike_nvpt" and spike_filter == "if":
        return resolve_backend(requested, device)
    return "none"


def describe_device(device: torch.device) -> str:
    """'cuda:0 NVIDIA H200' or 'cpu': where a run ran, for results.json."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} {torch.cuda.get_device_name(index)}"
    return str(device)


def make_surrogate(name: str, alpha: float):
    with _quiet_import():
        from spikingjelly.activation_based import surrogate

    return {"atan": surrogate.ATan, "sigmoid": surrogate.Sigmoid}[name](alpha=alpha)


def make_if_node(v_threshold: float, hard_reset: bool, surrogate_name: str, alpha: float):
    """A multi-step IFNode; SignalFilteringLayer.record switches on keeping its membrane potentials."""
    kwargs = dict(
        v_threshold=v_threshold,
        v_reset=0.0 if hard_reset else None,  # None = soft reset: subtract the threshold
        surrogate_function=make_surrogate(surrogate_name, alpha),
        detach_reset=False,
        step_mode="m",
    )
    if has_backend_argument():
        kwargs["backend"] = "torch"  # switched per device by SignalFilteringLayer
    params = inspect.signature(_if_node_class().__init__).parameters
    return _if_node_class()(**{k: v for k, v in kwargs.items() if k in params})


def set_node_backend(node, backend: str) -> None:
    if has_backend_argument():
        node.backend = backend
