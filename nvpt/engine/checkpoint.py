"""Checkpoints: one safetensors file, written atomically, never unpickled.

A checkpoint holds only what trains (prompts + head; every parameter for `full`) and the
prompt source's buffers, plus, for resuming, the optimizer state, the schedule, the RNG
states and the metrics history. Tensors go in the safetensors body, everything else in
its JSON metadata, so loading a downloaded file can never run code.

    model/<name>            trainable parameters and prompt buffers
    optim/<index>/<key>     optimizer state tensors (index = position in param_groups)
    rng/<name>              torch RNG states (uint8)
    metadata["nvpt"]        JSON: epoch, schedule, param groups, best, history, model identity
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from nvpt.errors import NVPTError
from nvpt.io import atomic_write, atomic_write_text  # noqa: F401  (re-exported: the engine's writers)
from nvpt.outputs import BEST, LAST  # noqa: F401  (re-exported: the names of a run's checkpoints)

FORMAT = "nvpt-checkpoint-1"


def checkpoint_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """What a checkpoint stores of the model: trainable parameters + the prompt source's buffers."""
    state = {name: p.detach() for name, p in model.named_parameters() if p.requires_grad}
    prompts = getattr(model, "prompts", None)
    if prompts is not None:
        state.update({f"prompts.{name}": b.detach() for name, b in prompts.named_buffers()})
    return state


def model_identity(model: nn.Module, cfg) -> dict[str, Any]:
    return {"model_name": cfg.model.name, "method": cfg.prompt.method, "num_classes": int(model.num_classes),
            "deployed": bool(getattr(model, "deployed", False))}


def tensors_sha256(tensors: dict[str, torch.Tensor]) -> str:
    """Content hash of named tensors: name, dtype, shape and bytes of each, in sorted name order. It does not
    depend on file paths, metadata or the order tensors were saved in: the same weights give the same hash."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def save_checkpoint(path: str | Path, model: nn.Module, identity: dict, optimizer: torch.optim.Optimizer | None = None,
                    scheduler=None, scaler=None, **info: Any) -> None:
    tensors = {f"model/{k}": v.contiguous().cpu().clone() for k, v in checkpoint_state(model).items()}
    meta: dict[str, Any] = {"format": FORMAT, "identity": identity, **info}
    if optimizer is not None:
        opt = optimizer.state_dict()
        meta["param_groups"] = opt["param_groups"]
        scalars: dict[str, dict[str, Any]] = {}
        for index, state in opt["state"].items():
            for key, value in state.items():
                if isinstance(value, torch.Tensor):
                    tensors[f"optim/{index}/{key}"] = value.contiguous().cpu().clone()
                else:
                    scalars.setdefault(str(index), {})[key] = value
        meta["optim_scalars"] = scalars
        meta["scheduler"] = scheduler.state_dict() if scheduler is not None else None
        meta["scaler"] = scaler.state_dict() if scaler is not None and scaler.is_enabled() else None
        tensors["rng/cpu"] = torch.get_rng_state()
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            tensors["rng/cuda"] = torch.cuda.get_rng_state()
    atomic_write(Path(path), lambda tmp: save_file(tensors, str(tmp), metadata={"nvpt": json.dumps(meta)}))


def read_safetensors(path: Path, what: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and string metadata of a safetensors file; a damaged file is a one-line error."""
    try:
        tensors = load_file(str(path), device="cpu")
        with safe_open(str(path), framework="pt") as handle:
            return tensors, dict(handle.metadata() or {})
    except (SafetensorError, OSError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise NVPTError(f"cannot read {what} {path}: {first} (truncated or not a safetensors file)") from None


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        raise NVPTError(f"checkpoint not found: {path}")
    tensors, raw = read_safetensors(path, "checkpoint")
    try:
        meta = json.loads(raw.get("nvpt", "{}"))
    except json.JSONDecodeError:
        raise NVPTError(f"checkpoint {path} has damaged metadata (not a Spike-NVPT checkpoint)") from None
    if meta.get("format") != FORMAT:
        raise NVPTError(f"{path} is not a Spike-NVPT checkpoint (no '{FORMAT}' metadata)")
    return tensors, meta


def check_identity(path, meta: dict, identity: dict) -> None:
    saved = meta.get("identity", {})
    diffs = [f"{k}: checkpoint {saved.get(k)!r} vs model {v!r}" for k, v in identity.items()
             if k != "deployed" and saved.get(k) != v]
    if diffs:
        raise NVPTError(f"checkpoint {path} belongs to another model ({'; '.join(diffs)})")


def load_model_state(model: nn.Module, tensors: dict[str, torch.Tensor], path) -> None:
    """Copy model/* tensors into the model; every mismatch is named."""
    saved = {k[len("model/"):]: v for k, v in tensors.items() if k.startswith("model/")}
    own = dict(model.named_parameters())
    own.update(dict(model.named_buffers()))
    expected = checkpoint_state(model)
    wrong = [f"{k} {tuple(v.shape)}!={tuple(own[k].shape)}" for k, v in saved.items() if k in own and own[k].shape != v.shape]
    missing = sorted(set(expected) - set(saved))
    unexpected = sorted(set(saved) - set(own))
    if wrong or missing or unexpected:
        parts = [f"{label}: {', '.join(keys[:5])}" for label, keys in
                 (("wrong shape", wrong), ("missing", missing), ("unexpected", unexpected)) if keys]
        raise NVPTError(f"checkpoint {path} does not fit this model: {'; '.join(parts)}")
    with torch.no_grad():
        for name, value in saved.items():
            own[name].copy_(value.to(own[name].dtype))


def load_checkpoint(path, model: nn.Module, identity: dict, optimizer=None, scheduler=None, scaler=None) -> dict:
    """Restore model (and, when given, optimizer/schedule/RNG); returns the metadata."""
    tensors, meta = read_checkpoint(path)
    check_identity(path, meta, identity)
    load_model_state(model, tensors, path)
    if optimizer is not None:
        if "param_groups" not in meta:
            raise NVPTError(f"checkpoint {path} has no optimizer state: resume from checkpoint-last.safetensors")
        state: dict[int, dict[str, Any]] = {}
        for key, value in tensors.items():
            if key.startswith("optim/"):
                _, index, name = key.split("/", 2)
                state.setdefault(int(index), {})[name] = value
        for index, values in meta.get("optim_scalars", {}).items():
            state.setdefault(int(index), {}).update(values)
        optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
        if scheduler is not None and meta.get("scheduler"):
            scheduler.load_state_dict(meta["scheduler"])
        if scaler is not None and meta.get("scaler"):
            scaler.load_state_dict(meta["scaler"])
        torch.set_rng_state(tensors["rng/cpu"])
        if "rng/cuda" in tensors and torch.cuda.is_available():
            torch.cuda.set_rng_state(tensors["rng/cuda"])
    return meta
