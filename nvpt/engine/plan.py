"""What to do with a planned run's folder: train it, reuse its results, or resume it.

A run folder that holds results.json for the same config is finished (reuse); one without
results.json is unfinished and continues exactly with train.resume (resume); a folder trained
with another config is an error, never overwritten.

    action = plan_run(cfg, Path("runs/dtd-spike_nvpt-s0"), reuse=True)   # 'train' | 'reuse' | 'resume'
    epochs_done(Path("runs/dtd-spike_nvpt-s0"))                          # epochs its checkpoint-last holds
"""
from __future__ import annotations

import json
from pathlib import Path

from safetensors import safe_open

from nvpt.config import PEFT_METHODS, SCHEMA, Config, load_config
from nvpt.engine.checkpoint import LAST
from nvpt.errors import NVPTError

# keys that do not change what a run computes (or are rewritten when it resumes)
IGNORED_KEYS = {"output_dir", "run_name", "train.resume", "train.threads", "train.save_every", "data.num_workers",
                "data.cache", "data.cache_dir", "data.cache_memory_gb",
                "model.pretrained_file_howto"}


def config_differences(planned: Config, saved: Config) -> list[str]:
    """Keys whose values differ between the run we would train and a run folder's config.yaml."""
    a, b = ({k: cfg.get_path(k) for k in SCHEMA} for cfg in (planned, saved))
    if planned.prompt.method != "spike_nvpt":  # the spiking keys do not change what other methods compute
        a = {k: v for k, v in a.items() if not (k.startswith("spike.") or k == "prompt.deep")}
    # nor a PEFT method's own keys (adapter.*, lora.*, ssf.*) what the other methods compute
    a = {k: v for k, v in a.items() if k.split(".")[0] not in PEFT_METHODS or k.split(".")[0] == planned.prompt.method}
    return [k for k in a if k not in IGNORED_KEYS and a[k] != b.get(k)
            # num_classes=null is resolved from the data set when the run starts
            and not (k == "model.num_classes" and a[k] is None)]


def plan_run(cfg: Config, run_dir: Path, reuse: bool) -> str:
    """'train', 'reuse' (finished, same config) or 'resume' (unfinished, same config); else an error."""
    if not run_dir.exists() or not any(run_dir.iterdir()):
        return "train"
    if not reuse:
        raise NVPTError(f"run folder {run_dir} already exists; pass --reuse to collect it, or another output_dir=")
    saved = run_dir / "config.yaml"
    if not saved.is_file():
        raise NVPTError(f"run folder {run_dir} has no config.yaml; move it away or pass another output_dir=")
    diffs = config_differences(cfg, load_config(saved))
    if diffs:
        shown = ", ".join(diffs[:5]) + (f" (+{len(diffs) - 5} more)" if len(diffs) > 5 else "")
        raise NVPTError(f"run folder {run_dir} was trained with another config (differs in {shown}); "
                        "pass another output_dir= or move it away")
    if (run_dir / "results.json").is_file():
        return "reuse"
    return "resume"  # unfinished: continues from checkpoint-last, or restarts epoch 0 without one


def epochs_done(run_dir: Path) -> int:
    """Epochs an unfinished run will not repeat when resumed: those its checkpoint-last holds (read from
    the file's header only); 0 without a readable one."""
    try:
        with safe_open(str(Path(run_dir) / LAST), framework="pt") as handle:
            return int(json.loads((handle.metadata() or {})["nvpt"])["epoch"]) + 1
    except Exception:  # missing, truncated or foreign: resuming restarts from epoch 0
        return 0
