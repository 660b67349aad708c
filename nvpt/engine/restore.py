"""Rebuild a trained model from a run folder or a checkpoint file (for evaluation, plots, export)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from nvpt.config import Config, load_config
from nvpt.engine.checkpoint import BEST, LAST, check_identity, load_model_state, model_identity, read_checkpoint
from nvpt.errors import NVPTError
from nvpt.models import PromptedViT, build_model



@dataclass
class LoadedRun:
    cfg: Config
    model: PromptedViT
    run_dir: Path
    checkpoint: Path
    meta: dict


def locate(path: str | Path) -> tuple[Path, Path]:
    """A run folder (its best checkpoint) or a checkpoint file -> (run_dir, checkpoint)."""
    path = Path(path)
    if path.is_dir():
        for name in (BEST, LAST):
            if (path / name).is_file():
                return path, path / name
        raise NVPTError(f"run folder {path} has no {BEST} or {LAST}: the run never finished an epoch "
                        "(train it with tools/train.py, or pass a checkpoint file)")
    if path.is_file():
        return path.parent, path
    raise NVPTError(f"no run folder or checkpoint at {path}")


def rebuild_model(cfg: Config, deployed: bool = False) -> PromptedViT:
    """build_model seeded as run_training seeds it: a randomly initialised frozen backbone
    (model.pretrained=false, no file) comes back bit for bit; the global RNG is left untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        return build_model(cfg, deployed=deployed)


def load_run(path: str | Path, overrides: list[str] | tuple = (), device: str | torch.device = "cpu") -> LoadedRun:
    """cfg from the run's config.yaml (+ overrides), model with the checkpoint's weights, in eval mode."""
    run_dir, ckpt = locate(path)
    config = run_dir / "config.yaml"
    if not config.is_file():
        raise NVPTError(f"{run_dir} has no config.yaml next to {ckpt.name}; pass the run folder tools/train.py wrote")
    cfg = load_config(config, list(overrides))
    tensors, meta = read_checkpoint(ckpt)
    deployed = bool(meta.get("identity", {}).get("deployed"))
    model = rebuild_model(cfg, deployed)
    check_identity(ckpt, meta, model_identity(model, cfg))
    load_model_state(model, tensors, ckpt)
    return LoadedRun(cfg, model.to(device).eval(), run_dir, ckpt, meta)
