"""Finished runs as the evaluation sees them: find and read run folders, load their models, check that
several runs share one test set, and evaluate them together (corrupt once, score many).

Used by tools/eval_robustness.py, tools/visualize_spikes.py and `make paper` (nvpt.paper), so the tools stay
thin and every caller reads run folders the same way.

    entries = [run_entry(path, overrides) for path in ("runs/demo/spike_nvpt-s0", "runs/demo/vpt_deep-s0")]
    check_shared_test_set(entries)                          # one-line NVPTError when they differ
    summaries, test_images = evaluate_runs(entries, device)  # one pass over the test batches
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from nvpt.config import Config, load_config
from nvpt.engine.distributed import DistInfo
from nvpt.engine.loop import Normalize
from nvpt.engine.restore import BEST, LAST, load_run, locate
from nvpt.engine.run import backbone_data_config, make_loader, prepare_data, seed_everything
from nvpt.errors import NVPTError
from nvpt.robustness.corruptions import CORRUPTION_VERSION, corruption_version, resolve_table
from nvpt.robustness.evaluate import Scorer, evaluate_many, robustness_sets
from nvpt.robustness.report import set_key
from nvpt.robustness.schema import read_summary as read_checked_summary

# data keys that change how the test set is loaded, not which images it holds
LOADING_KEYS = {"batch_size", "eval_batch_size", "num_workers", "download"}
# data sets whose test images depend on the run's seed (the textures demo draws its crops with it)
SEEDED_TEST_DATA = {"textures"}


# -- run folders ------------------------------------------------------------------------
def read_config(run_dir: Path) -> dict:
    """A run's config.yaml as a plain dict ({} when missing or unreadable): for discovery, never for training."""
    try:
        tree = yaml.safe_load((Path(run_dir) / "config.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return tree if isinstance(tree, dict) else {}


def setting(tree: dict, section: str, key: str):
    value = tree.get(section)
    return value.get(key) if isinstance(value, dict) else None


def checkpoint_time(run_dir: Path) -> float | None:
    """Modification time of the run's newest checkpoint, None without one."""
    times = [(run_dir / name).stat().st_mtime for name in (BEST, LAST) if (run_dir / name).is_file()]
    return max(times) if times else None


def latest_run(root: Path, method: str) -> Path | None:
    """The run folder of `method` under `root` (at any depth) with the most recent checkpoint."""
    if not Path(root).is_dir():
        return None
    runs = [c.parent for c in Path(root).rglob("config.yaml")
            if setting(read_config(c.parent), "prompt", "method") == method and checkpoint_time(c.parent)]
    return max(runs, key=checkpoint_time, default=None)


def siblings(run_dir: Path) -> list[Path]:
    """Run folders next to `run_dir` (itself included) trained on the same data set."""
    own = read_config(run_dir)
    same_data = (setting(own, "data", "name"), setting(own, "data", "task"))
    return sorted(d for d in run_dir.parent.iterdir() if d.is_dir() and (d / "config.yaml").is_file()
                  and (setting(read_config(d), "data", "name"), setting(read_config(d), "data", "task")) == same_data)


def read_summary(path: Path) -> dict:
    """A results.json / robustness.json summary, checked (nvpt.robustness.schema): one line naming file, key and fix."""
    return read_checked_summary(path, "pass a results.json of tools/train.py or a robustness.json of "
                                      "tools/eval_robustness.py")


# -- what to evaluate -----------------------------------------------------------------------
@dataclass
class RunEntry:
    run_dir: Path
    checkpoint: Path
    cfg: Config


def run_entry(path: str | Path, overrides: list[str] | tuple = ()) -> RunEntry:
    """A run folder or checkpoint -> its config (+ overrides), checked, without building the model (bad options
    fail fast)."""
    run_dir, ckpt = locate(path)
    config = run_dir / "config.yaml"
    if not config.is_file():
        raise NVPTError(f"{run_dir} has no config.yaml next to {ckpt.name}; pass the run folder tools/train.py wrote")
    cfg = load_config(config, list(overrides))
    robustness_sets(cfg.eval)
    return RunEntry(run_dir, ckpt, cfg)


def test_data_key(cfg: Config) -> tuple:
    """What decides which test images a run sees: its data config without the loading keys, and its seed where the
    data set draws its test images with it."""
    data = {k: v for k, v in cfg.data.items() if k not in LOADING_KEYS}
    return (json.dumps(data, sort_keys=True, default=str), cfg.seed if cfg.data.name in SEEDED_TEST_DATA else None,
            backbone_data_config(cfg)[:2])


def same_test_data(a: Config, b: Config) -> bool:
    return test_data_key(a) == test_data_key(b)


def eval_key(cfg: Config) -> tuple:
    """The evaluation a run asks for: its sets, noise seed, severity table, split."""
    return (tuple(set_key(*s) for s in robustness_sets(cfg.eval)), cfg.eval.seed,
            resolve_table(cfg.eval.corruption_table, backbone_data_config(cfg)[0]), cfg.eval.split)


def same_sets(summary: dict, cfg: Config) -> bool:
    """Whether a summary was evaluated on exactly the sets, noise seed and severity table cfg.eval asks for."""
    sets, seed, table, _ = eval_key(cfg)
    return set(summary.get("sets", {})) == set(sets) and summary.get("noise_seed") == seed \
        and summary.get("corruption_table") == table and corruption_version(summary) == CORRUPTION_VERSION


def check_shared_test_set(entries: list[RunEntry]) -> None:
    """Runs evaluated in one pass must share the test images (data config, img size, channels) and the evaluation
    (sets, noise seed, table, split); else a one-line NVPTError naming the first that differs."""
    first = entries[0]
    for other in entries[1:]:
        if not same_test_data(first.cfg, other.cfg):
            raise NVPTError(f"{other.run_dir} and {first.run_dir} have different test data (data.*, image size or, for "
                            f"{'/'.join(sorted(SEEDED_TEST_DATA))}, seed): evaluate them in separate calls")
        if eval_key(first.cfg) != eval_key(other.cfg):
            raise NVPTError(f"{other.run_dir} and {first.run_dir} ask for different evaluations (eval.corruptions, "
                            "severities, gaussian_std, seed, corruption_table or split): pass the same options or "
                            "evaluate them in separate calls")
        if first.cfg.data.eval_batch_size != other.cfg.data.eval_batch_size:
            raise NVPTError(f"{other.run_dir} and {first.run_dir} have different data.eval_batch_size: pass --batch-size")


def eval_settings(cfg: Config, device: torch.device) -> dict:
    """Mixed precision exactly as tools/train.py's final evaluation (CUDA only)."""
    return {"amp": bool(cfg.train.amp and device.type == "cuda"),
            "amp_dtype": {"bfloat16": torch.bfloat16, "float16": torch.float16}[cfg.train.amp_dtype]}


def load_model(entry: RunEntry, overrides: list[str] | tuple, device: torch.device) -> torch.nn.Module:
    """The run's checkpoint in its model, deployed, in eval mode on `device`."""
    # Training seeds right before building the model: the same seed rebuilds the same frozen
    # backbone when it is randomly initialised (model.pretrained=false, no pretrained_file).
    seed_everything(entry.cfg.seed)
    model = load_run(entry.checkpoint, list(overrides)).model.deploy()
    return model.to(device).eval()


def test_set(cfg: Config, device: torch.device):
    """(bundle, img_size, loader) of cfg's evaluation split (eval.split), as training builds it."""
    seed_everything(cfg.seed)  # as training, in case a data set draws from the global RNG
    bundle, img_size = prepare_data(cfg)
    split = bundle.val if cfg.eval.split == "val" else bundle.test
    if split is None:
        raise NVPTError(f"eval.split=val but {cfg.data.name} has no validation split here")
    return bundle, img_size, make_loader(split, cfg.data.eval_batch_size, cfg, DistInfo(), False, device)


def normalization(cfg: Config) -> Normalize:
    """The run's own input normalisation, as build_datasets resolves it (data.mean/std, else its backbone's)."""
    from nvpt.data import _per_channel

    _, in_chans, mean, std = backbone_data_config(cfg)
    explicit = cfg.data.mean is not None
    return Normalize(_per_channel(cfg.data.mean if explicit else mean, in_chans, "data.mean"),
                     _per_channel(cfg.data.std if explicit else std, in_chans, "data.std"))


def input_shape(cfg: Config) -> tuple:
    """(image size, channels, classes) a run's model takes."""
    return (*backbone_data_config(cfg)[:2], cfg.model.num_classes)


@dataclass
class Evaluation:
    summaries: list[dict]  # the entries' in their order, then the reference run's when one was scored
    images: dict[str, int]  # train / val / test set sizes of the shared data (val 0: no validation split)
    models: list[torch.nn.Module]  # the deployed models, in the summaries' order


def evaluate_runs(entries: list[RunEntry], device: torch.device, overrides: list[str] | tuple = (),
                  reference: dict | RunEntry | None = None, show_progress: bool = False) -> Evaluation:
    """Evaluate every entry in one pass over their shared test set (check_shared_test_set), each with its own
    normalisation and mixed precision. A reference summary is diffed against;
    a reference run is scored in the same pass on the entries' images and noise (it needs only the same input
    shape) and its summary comes last. Each entry's summary equals what its own final evaluation computes."""
    extra = [reference] if isinstance(reference, RunEntry) else []
    check_shared_test_set(entries)
    cfg = entries[0].cfg
    for other in extra:
        if input_shape(other.cfg) != input_shape(cfg):
            theirs, ours = input_shape(other.cfg), input_shape(cfg)
            raise NVPTError(f"{other.run_dir} takes {theirs[0]} px, {theirs[1]}-channel images and {theirs[2]} "
                            f"classes, {entries[0].run_dir} {ours[0]} px, {ours[1]} channels and {ours[2]} classes: "
                            "they cannot be evaluated on the same test set")
    bundle, img_size, loader = test_set(cfg, device)
    scorers = [Scorer(load_model(e, overrides, device), normalization(e.cfg).to(device), **eval_settings(e.cfg, device))
               for e in list(entries) + list(extra)]
    summaries = evaluate_many(scorers, loader, device, cfg.eval, img_size,
                              len(scorers) - 1 if extra else reference, show_progress)
    images = {"train": len(bundle.train), "val": len(bundle.val) if bundle.val else 0, "test": len(bundle.test)}
    return Evaluation(summaries, images, [s.model for s in scorers])


def find_reference(path: str | Path, cfg: Config, overrides: list[str] | tuple) -> tuple[dict | RunEntry, str]:
    """(summary, 'json' | 'results.json') when a stored summary fits, else (the run to evaluate, 'evaluated').

    A .json file is used as given; a run's results.json only when it was computed from checkpoint-best on the same
    test data with the same sets and noise."""
    if Path(path).is_file() and Path(path).suffix == ".json":
        return read_summary(Path(path)), "json"
    ref = run_entry(path, overrides)
    results = ref.run_dir / "results.json"
    if ref.checkpoint.name == BEST and results.is_file() and same_test_data(cfg, ref.cfg):
        stored = read_summary(results)
        if same_sets(stored, cfg):
            return stored, "results.json"
    return ref, "evaluated"


OUT_FILES = ("robustness.json", "robustness.csv", "robustness.md")


def write_robustness(summary: dict, out: Path, caption: str) -> str:
    """robustness.json / .csv / .md of one evaluated run into `out`; returns the markdown table."""
    from nvpt.engine.checkpoint import atomic_write_text
    from nvpt.robustness.report import markdown_table, write_csv, write_json

    table = markdown_table(summary)
    write_json(summary, out / "robustness.json")
    write_csv(summary, out / "robustness.csv")
    atomic_write_text(out / "robustness.md", f"Top-1 accuracy (%) of {caption}\n\n{table}")
    return table
