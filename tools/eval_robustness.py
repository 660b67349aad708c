"""Evaluate a trained run clean and under noise, optionally against a reference run.

    python tools/eval_robustness.py RUN_OR_CHECKPOINT [options]
    python tools/eval_robustness.py runs/demo/spike_nvpt-s0
    python tools/eval_robustness.py RUN --corruptions gaussian_noise shot_noise --severities 1 3 5 \\
        --gaussian-std 0.1 0.2 --reference runs/demo/vpt_deep-s0
    python tools/eval_robustness.py RUN --corruptions all --gaussian-std   # the 19 ImageNet-C corruptions

Unset options take the run's own `eval.*` config, so with no options the numbers equal the
run's results.json (same code: nvpt.robustness.evaluate.evaluate_robustness). Writes
robustness.json / .csv / .md to --out (default RUN/robustness/) and prints the table.
"""
import json
import sys
from pathlib import Path

import _bootstrap  # noqa: F401
import torch

from nvpt.cli import finite_float, parser, run_main
from nvpt.config import Config, load_config
from nvpt.engine.checkpoint import atomic_write_text
from nvpt.engine.distributed import DistInfo
from nvpt.engine.loop import Normalize
from nvpt.engine.restore import BEST, load_run, locate
from nvpt.engine.run import backbone_data_config, make_loader, prepare_data, resolve_device, seed_everything
from nvpt.errors import NVPTError
from nvpt.outputs import check_output_folder
from nvpt.robustness.corruptions import CORRUPTION_VERSION, corruption_version, resolve_table
from nvpt.robustness.evaluate import evaluate_robustness, robustness_sets
from nvpt.robustness.report import markdown_table, set_key, write_csv, write_json
from nvpt.robustness.schema import read_summary as read_checked_summary

# data keys that change how the test set is loaded, not which images it holds
_LOADING_KEYS = {"batch_size", "eval_batch_size", "num_workers", "download"}
OUT_FILES = ("robustness.json", "robustness.csv", "robustness.md")


def build_parser():
    p = parser("Top-1 accuracy of a trained run clean and under each noise corruption; "
               "unset options default to the run's eval.* config.")
    p.add_argument("run", help="run folder (uses checkpoint-best.safetensors) or a checkpoint file inside one")
    p.add_argument("--corruptions", nargs="*", metavar="NAME",
                   help="corruption names (gaussian_noise, fog, jpeg_compression, ...), families (noise, blur, "
                        "weather, digital), common (ImageNet-C's 15), extra (its 4 others) or all; "
                        "none: no corruption sets")
    p.add_argument("--severities", nargs="+", type=int, metavar="S", help="severities 1..5 of --corruptions")
    p.add_argument("--gaussian-std", nargs="*", type=finite_float, metavar="SIGMA",
                   help="plain Gaussian noise sigmas on [0,1] images (none: no Gaussian sets)")
    p.add_argument("--table", choices=("auto", "imagenet", "cifar"), help="severity constants (auto: cifar below 64 px)")
    p.add_argument("--noise-seed", type=int, metavar="N", help="seed of the evaluation noise (eval.seed)")
    p.add_argument("--reference", metavar="RUN_OR_JSON",
                   help="diff to this run (its results.json when it has the same sets and test data, "
                        "else evaluated here) or to a results.json / robustness.json file")
    p.add_argument("--out", metavar="DIR", help="output folder (default: RUN/robustness/)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto: cuda when available")
    p.add_argument("--batch-size", type=int, metavar="N",
                   help="evaluation batch size (default: the run's data.eval_batch_size)")
    return p


def eval_overrides(args) -> list[str]:
    """Command-line options as config overrides (JSON lists are valid YAML), checked by load_config."""
    pairs = [("eval.corruptions", args.corruptions), ("eval.severities", args.severities),
             ("eval.gaussian_std", args.gaussian_std), ("eval.corruption_table", args.table),
             ("eval.seed", args.noise_seed), ("data.eval_batch_size", args.batch_size)]
    out = [f"{key}={json.dumps(value)}" for key, value in pairs if value is not None]
    return out + [f"train.device={args.device}"]


def run_config(path: str, overrides: list[str]) -> tuple[Path, Path, Config]:
    """(run_dir, checkpoint, cfg) without building the model, so bad options fail fast."""
    run_dir, ckpt = locate(path)
    config = run_dir / "config.yaml"
    if not config.is_file():
        raise NVPTError(f"{run_dir} has no config.yaml next to {ckpt.name}; pass the run folder tools/train.py wrote")
    cfg = load_config(config, overrides)
    robustness_sets(cfg.eval)
    return run_dir, ckpt, cfg


def load_model(ckpt: Path, cfg: Config, overrides: list[str], device):
    # Training seeds right before building the model: the same seed rebuilds the same frozen
    # backbone when it is randomly initialised (model.pretrained=false, no pretrained_file).
    seed_everything(cfg.seed)
    model = load_run(ckpt, overrides).model.deploy()
    return model.to(device).eval()


def eval_settings(cfg: Config, device) -> dict:
    """Mixed precision exactly as tools/train.py's final evaluation (CUDA only)."""
    return {"amp": bool(cfg.train.amp and device.type == "cuda"),
            "amp_dtype": {"bfloat16": torch.bfloat16, "float16": torch.float16}[cfg.train.amp_dtype]}


def same_sets(summary: dict, cfg: Config) -> bool:
    """Whether a summary was evaluated on exactly the sets, noise seed and severity table cfg.eval asks for."""
    wanted = {set_key(*s) for s in robustness_sets(cfg.eval)}
    table = resolve_table(cfg.eval.corruption_table, backbone_data_config(cfg)[0])
    return (set(summary.get("sets", {})) == wanted and summary.get("noise_seed") == cfg.eval.seed
            and summary.get("corruption_table") == table and corruption_version(summary) == CORRUPTION_VERSION)


def same_test_data(a: Config, b: Config) -> bool:
    """Same data config (ignoring loader settings) and seed (it picks e.g. the textures crops)."""
    def key(c):
        return c.seed, {k: v for k, v in c.data.items() if k not in _LOADING_KEYS}
    return key(a) == key(b)


def read_summary(path: Path) -> dict:
    return read_checked_summary(path, "pass a results.json of tools/train.py or a robustness.json of this tool")


def find_reference(path: str, cfg: Config, overrides: list[str]):
    """(summary, source, None) when a stored summary fits, else (None, "evaluated", (checkpoint, cfg)) to evaluate.

    A .json file is used as given; a run's results.json only when it was computed from
    checkpoint-best on the same test data with the same sets and noise."""
    if Path(path).is_file() and Path(path).suffix == ".json":
        return read_summary(Path(path)), "json", None
    ref_dir, ref_ckpt, ref_cfg = run_config(path, overrides)
    results = ref_dir / "results.json"
    if ref_ckpt.name == BEST and results.is_file() and same_test_data(cfg, ref_cfg):
        stored = read_summary(results)
        if same_sets(stored, cfg):
            return stored, "results.json", None
    return None, "evaluated", (ref_ckpt, ref_cfg)


def main(argv):
    args = build_parser().parse_args(argv)
    if args.batch_size is not None and args.batch_size < 1:
        raise NVPTError(f"--batch-size must be >= 1, got {args.batch_size}")
    overrides = eval_overrides(args)
    run_dir, ckpt, cfg = run_config(args.run, overrides)
    out = check_output_folder(args.out or run_dir / "robustness", OUT_FILES, [args.reference])  # before any work

    ref_summary = ref_source = ref_run = None
    if args.reference:  # checked before any evaluation starts
        ref_summary, ref_source, ref_run = find_reference(args.reference, cfg, overrides)

    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    device = resolve_device(cfg, DistInfo())
    settings = eval_settings(cfg, device)
    model = load_model(ckpt, cfg, overrides, device)
    seed_everything(cfg.seed)  # as training, in case a data set draws from the global RNG
    bundle, img_size = prepare_data(cfg)
    loader = make_loader(bundle.test, cfg.data.eval_batch_size, cfg, DistInfo(), False, device)

    if ref_run is not None:
        # evaluated here on this run's test images and noise, with the reference's own normalisation
        ref_ckpt, ref_cfg = ref_run
        seed_everything(ref_cfg.seed)
        ref_bundle, ref_img = prepare_data(ref_cfg)
        theirs = (ref_img, len(ref_bundle.mean), ref_cfg.model.num_classes)
        ours = (img_size, len(bundle.mean), cfg.model.num_classes)
        if theirs != ours:
            raise NVPTError(f"reference {args.reference} takes {theirs[0]} px, {theirs[1]}-channel images and "
                            f"{theirs[2]} classes, this run {ours[0]} px, {ours[1]} channels and {ours[2]} classes: "
                            "they cannot be evaluated on the same test set")
        ref_model = load_model(ref_ckpt, ref_cfg, overrides, device)
        ref_norm = Normalize(ref_bundle.mean, ref_bundle.std).to(device)
        ref_summary = evaluate_robustness(ref_model, loader, ref_norm, device, cfg.eval, img_size,
                                          **eval_settings(ref_cfg, device))
        del ref_model

    normalize = Normalize(bundle.mean, bundle.std).to(device)
    summary = evaluate_robustness(model, loader, normalize, device, cfg.eval, img_size, reference=ref_summary,
                                  show_progress=True, **settings)
    summary.update(method=cfg.prompt.method, seed=cfg.seed, run=str(run_dir), checkpoint=str(ckpt),
                   test_images=len(bundle.test))
    if ref_summary is not None:
        summary["reference"] = {"path": args.reference, "source": ref_source, "summary": ref_summary}
        if ref_source == "json" and not same_sets(ref_summary, cfg):
            print(f"note: {args.reference} has other sets or noise than this evaluation: differences of means are n/a")

    table = markdown_table(summary)
    write_json(summary, out / "robustness.json")
    write_csv(summary, out / "robustness.csv")
    caption = f"{cfg.prompt.method} seed {cfg.seed} ({ckpt})" + (f" vs {args.reference}" if args.reference else "")
    atomic_write_text(out / "robustness.md", f"Top-1 accuracy (%) of {caption}\n\n{table}")
    print(table, end="")
    print(f"wrote {out}/robustness.json, robustness.csv, robustness.md")


if __name__ == "__main__":
    sys.exit(run_main(main))
