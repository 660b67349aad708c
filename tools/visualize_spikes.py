"""Figures of Spike-NVPT under noise: membrane potentials, binary prompts, firing rates, accuracy curves.

    python tools/visualize_spikes.py                  # latest spike_nvpt run under runs/, else the demo model
    python tools/visualize_spikes.py runs/demo/spike_nvpt-s0 --noise 0 0.2 0.5 --neurons 6
    python tools/visualize_spikes.py RUN --runs runs/demo/spike_nvpt-s0 runs/demo/vpt_deep-s0

Writes membrane_potential, binary_prompts, firing_rates and accuracy_vs_noise, each as .png
and .pdf, into --out (default visualizations/). docs/visualizations.md explains the figures.
"""
import sys
from dataclasses import dataclass
from pathlib import Path

import _bootstrap  # noqa: F401
import torch

from nvpt.cli import parser, run_main
from nvpt.config import Config, load_config
from nvpt.engine.restore import load_run, locate
from nvpt.errors import NVPTError
from nvpt.outputs import check_output_folder
from nvpt.robustness.corruptions import check_versions
from nvpt.robustness.runs import checkpoint_time, latest_run, read_config, setting, siblings
from nvpt.viz.curves import read_results

DEMO_CONFIG = _bootstrap.ROOT / "configs" / "demo" / "spike_nvpt.yaml"
DEMO_BACKBONE = _bootstrap.ROOT / "nvpt" / "assets" / "demo_backbone.safetensors"


@dataclass
class SpikeSource:
    prompts: torch.nn.Module  # SpikePrompts
    cfg: Config
    vpt_bound: float  # VPT's init bound for this backbone
    run_dir: Path | None  # None: the demo model
    description: str  # what the figures show, for the titles and the console


def load_spike_run(path: Path) -> SpikeSource:
    from nvpt.models.backbone import vpt_init_bound

    run_dir, checkpoint = locate(path)  # NVPTError when there is no checkpoint
    method = setting(read_config(run_dir), "prompt", "method")
    if method != "spike_nvpt":
        raise NVPTError(f"{run_dir} is a prompt.method={method} run; the spike figures need a spike_nvpt run "
                        "(baseline runs can go to --runs for the accuracy curves)")
    loaded = load_run(path)
    return SpikeSource(loaded.model.prompts, loaded.cfg, vpt_init_bound(loaded.model.backbone), run_dir,
                       f"trained run {run_dir} ({checkpoint.name})")


def load_demo() -> SpikeSource:
    """The demo spike_nvpt model with its prompts at initialisation (as a demo run starts)."""
    from nvpt.engine.restore import rebuild_model
    from nvpt.engine.run import prepare_data, seed_everything
    from nvpt.models.backbone import vpt_init_bound

    backbone = str(DEMO_BACKBONE) if DEMO_BACKBONE.is_file() else "null"
    cfg = load_config(DEMO_CONFIG, [f"model.pretrained_file={backbone}"])
    seed_everything(cfg.seed)
    prepare_data(cfg)  # model.num_classes from the texture set
    model = rebuild_model(cfg).eval()  # seeded as tools/train.py: the same initial prompts
    weights = "demo backbone" if backbone != "null" else "random backbone (no demo_backbone.safetensors yet)"
    return SpikeSource(model.prompts, cfg, vpt_init_bound(model.backbone), None,
                       f"demo model ({DEMO_CONFIG.name}, {weights}): UNTRAINED prompts (initialisation, seed {cfg.seed})")


def vpt_reference(source: SpikeSource, seed: int) -> tuple[torch.Tensor, str]:
    """Continuous prompts [L, P, D] to compare with: a sibling vpt_deep run's, else VPT's init."""
    from nvpt.engine.checkpoint import read_checkpoint

    shape = tuple(source.prompts.shape)
    if source.run_dir is not None:
        runs = [d for d in siblings(source.run_dir)
                if setting(read_config(d), "prompt", "method") == "vpt_deep" and checkpoint_time(d)]
        for run_dir in sorted(runs, key=checkpoint_time, reverse=True):
            # the tokens straight from the checkpoint: no backbone to build (or fetch from the hub)
            tokens = read_checkpoint(locate(run_dir)[1])[0].get("model/prompts.tokens")
            if tokens is not None and tuple(tokens.shape) == shape:
                return tokens, f"trained vpt_deep run {run_dir.name}"
    gen = torch.Generator().manual_seed(seed + 1)  # a stream apart from the injected noise's
    tokens = (torch.rand(shape, generator=gen) * 2 - 1) * source.vpt_bound
    return tokens, f"VPT's init U(\u00b1{source.vpt_bound:.3g}), no vpt_deep run of this shape found"


from nvpt.outputs import check_output_folder
from nvpt.robustness.corruptions import check_versions
def default_curve_runs(source: SpikeSource) -> list[Path]:
    """The spike_nvpt run and its siblings on the same data set, those with results.json."""
    if source.run_dir is None:
        return []
    return [d for d in siblings(source.run_dir) if (d / "results.json").is_file()]


def main(argv):
    p = parser("Figures of Spike-NVPT's Signal Filtering Layer under noise, and accuracy-vs-noise curves.")
    p.add_argument("run", nargs="?", help="spike_nvpt run folder or checkpoint; default: the latest one under "
                   "--runs-root, else the demo model with untrained prompts")
    p.add_argument("--out", default="visualizations", help="output folder (default: visualizations/)")
    p.add_argument("--noise", type=float, nargs="+", default=[0.0, 0.1, 0.3, 0.5, 1.0],
                   help="noise stds injected into the SFL input current (default: 0 0.1 0.3 0.5 1.0)")
    p.add_argument("--neurons", type=int, default=4, help="SFL neurons to trace, 1..16 (default 4)")
    p.add_argument("--runs", nargs="+", metavar="RUN", help="run folders (any method) with results.json for the "
                   "accuracy curves; default: the spike_nvpt run and its siblings on the same data set")
    p.add_argument("--seed", type=int, default=0, help="seed of the injected noise (default 0)")
    p.add_argument("--runs-root", default="runs", help="where to look for the latest run (default: runs/)")
    args = p.parse_args(argv)

    from nvpt.viz.curves import plot_accuracy_vs_noise
    from nvpt.viz.spikes import (check_noise_levels, noise_responses, pick_neurons, plot_binary_prompts,
                                 plot_firing_rates, plot_membrane_potential)

    levels = sorted(set(check_noise_levels(args.noise)))
    if not 1 <= args.neurons <= 16:
        raise NVPTError(f"--neurons must be between 1 and 16 (one figure row each), got {args.neurons}")
    if args.seed < 0:
        raise NVPTError(f"--seed must be >= 0, got {args.seed}")
    out = check_output_folder(args.out)
    results = [read_results(Path(r)) for r in args.runs or []]  # bad --runs fail before any work

    if args.run:
        source = load_spike_run(Path(args.run))
    else:
        latest = latest_run(Path(args.runs_root), "spike_nvpt")
        if latest is None:
            print(f"no trained spike_nvpt run under {args.runs_root}/ (train one with `make demo`); "
                  "showing the demo model instead")
        source = load_spike_run(latest) if latest else load_demo()
    print(f"spike figures: {source.description}")
    prompts, train_noise = source.prompts, source.cfg.spike.noise_std
    # one shared noise draw scaled per level: each level's response is computed once
    all_levels = sorted({0.0, *levels, train_noise})
    by_level = dict(zip(all_levels, noise_responses(prompts, all_levels, args.seed)))
    reference, clean, noisy = by_level[0.0], by_level[0.0], by_level[train_noise]
    responses = [by_level[level] for level in levels]
    neurons = pick_neurons(prompts.current, reference.boundary, args.neurons, reference.v_threshold)
    vpt_tokens, vpt_source = vpt_reference(source, args.seed)
    print(f"VPT comparison: {vpt_source}")
    subtitle = f"{source.description}; noise seed {args.seed}"

    out.mkdir(parents=True, exist_ok=True)
    written = plot_membrane_potential(responses, reference, neurons, out / "membrane_potential", title=subtitle)
    written += plot_binary_prompts(responses, reference, vpt_tokens, vpt_source, out / "binary_prompts", title=subtitle,
                                   spike_scale=prompts.scale, center=prompts.center)
    written += plot_firing_rates(clean, noisy, out / "firing_rates", title=subtitle, target_rate=prompts.target_rate)

    if not args.runs:
        results = [read_results(d) for d in default_curve_runs(source)]
    if results:
        named = {}
        for name, summary in results:
            named[name if name not in named else f"{name} #{len(named) + 1}"] = summary
        check_versions(named)  # curves of one set of noisy images
        print("accuracy curves: " + ", ".join(f"{n} ({s.get('method')})" for n, s in named.items()))
        written += plot_accuracy_vs_noise(named, out / "accuracy_vs_noise")
    else:
        print("accuracy_vs_noise: skipped, no finished run (results.json) to plot; pass --runs or train with `make demo`")
    for path in written:
        print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(run_main(main))
