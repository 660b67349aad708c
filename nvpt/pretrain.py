"""Offline pretraining of a backbone: a `full` run (every weight trained) whose timm weights are
exported as a plain .safetensors file for `model.pretrained_file`.

    result = pretrain(cfg, "configs/demo/backbone.yaml")   # run folder + <run>/backbone.safetensors
    export_backbone("runs/pretrain/backbone-full-s0", "nvpt/assets/demo_backbone.safetensors")

The run folder is a training run folder (config, metrics.jsonl, atomic checkpoints, exact
resume through train.resume); the export is written last, from the best checkpoint.
"""
from __future__ import annotations

from pathlib import Path

from nvpt.config import Config
from nvpt.engine.checkpoint import atomic_write, tensors_sha256
from nvpt.engine.restore import load_run
from nvpt.pipeline import RunResult, run_training
from nvpt.errors import NVPTError
from nvpt.outputs import check_output

BACKBONE_FILE = "backbone.safetensors"


def export_backbone(run: str | Path, out: str | Path) -> tuple[Path, int, str]:
    """Write the backbone of a `full` run (its best checkpoint) -> (path, number of values, sha256 of the weights:
    tensors_sha256, also stored in the file's metadata)."""
    out = Path(out)
    if out.suffix != ".safetensors":
        raise NVPTError(f"output {out} must end in .safetensors")
    check_output(out, inputs=[run])  # never over the run's own checkpoint, config or results
    loaded = load_run(run)
    if loaded.cfg.prompt.method != "full":
        raise NVPTError(f"{run} is a {loaded.cfg.prompt.method} run; only a `full` run trains the backbone")
    from safetensors.torch import save_file

    state = {k: v.contiguous() for k, v in loaded.model.backbone.state_dict().items()}
    digest = tensors_sha256(state)  # of the weights alone: the same for the same weights wherever they were trained
    ckpt = loaded.checkpoint
    meta = {"source": f"{ckpt.parent.name}/{ckpt.name}", "model": loaded.cfg.model.name,
            "kwargs": loaded.cfg.model.kwargs or "", "img_size": str(loaded.cfg.model.img_size),
            "data": loaded.cfg.data.name, "sha256": digest}
    atomic_write(out, lambda tmp: save_file(state, str(tmp), metadata=meta))
    return out, sum(v.numel() for v in state.values()), digest


def save_preview(cfg: Config, path: str | Path, classes: int = 10, per_class: int = 8) -> None:
    """PNG contact sheet of cfg's synthetic task: one row per class, its first training images (unaugmented)."""
    from torchvision.utils import save_image

    from nvpt.data.synthetic import preview

    d = cfg.data
    if d.name != "synthetic":
        raise NVPTError(f"--preview shows the synthetic data set; this config has data.name={d.name}")
    images = preview(d.generator_seed, min(classes, d.synthetic_classes), per_class, d.crop_size,
                     tuple(d.synthetic_families))
    atomic_write(Path(path), lambda tmp: save_image(images, str(tmp), nrow=per_class, padding=1, format="png"))


def pretrain(cfg: Config, config_path: str | Path | None = None, show_progress: bool = True) -> tuple[RunResult, Path]:
    """Train every weight per cfg (prompt.method must be full), then export the backbone into the run folder."""
    if cfg.prompt.method != "full":
        raise NVPTError(f"pretraining trains the whole backbone: prompt.method must be full, got {cfg.prompt.method} "
                        "(use tools/train.py for prompt tuning)")
    result = run_training(cfg, config_path=config_path, show_progress=show_progress)
    path, count, digest = export_backbone(result.run_dir, result.run_dir / BACKBONE_FILE)
    print(f"wrote {path}: {count:,} values, sha256 {digest}")
    return result, path
