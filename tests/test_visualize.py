"""Spike-NVPT figures: the numbers they show, the files they write, tools/visualize_spikes.py.

The two real runs of the tool (a trained tiny run, the demo fallback) are subprocesses started
together once the runs exist, since most of their time is importing torch; the error paths
call the tool's main in this process.
"""
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from matplotlib.image import imread

from conftest import tiny_cfg
from nvpt.pipeline import run_training
from nvpt.errors import NVPTError
from nvpt.models import build_model
from nvpt.robustness.report import summarize
from nvpt.viz.curves import accuracy_curves, plot_accuracy_vs_noise
from nvpt.viz.spikes import (check_noise_levels, firing_rate, flip_fraction, noise_responses, pick_neurons,
                             plot_binary_prompts, plot_firing_rates, plot_membrane_potential, pre_reset_potential,
                             relative_l2_change, sparsity)

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parent.parent
TOOL = ROOT / "tools" / "visualize_spikes.py"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg"}
FIGURES = ("membrane_potential", "binary_prompts", "firing_rates", "accuracy_vs_noise")
RUN_OPTS = ("data.name=textures", "data.train_per_class=4", "data.test_per_class=4", "data.val_fraction=0.25",
            "data.crop_size=32", "data.num_workers=0", "train.epochs=1", "train.warmup_epochs=0",
            "eval.gaussian_std=[0.1]", "model.num_classes=null")


def spike_model(*overrides):
    torch.manual_seed(0)
    return build_model(tiny_cfg("prompt.method=spike_nvpt", *overrides)).eval()


def check_written(paths, prefix):
    """png + pdf at `prefix`, non-empty, the PNG a real image of a readable size."""
    assert sorted(p.name for p in paths) == sorted(f"{prefix.name}.{ext}" for ext in ("png", "pdf"))
    for path in paths:
        assert path.parent == prefix.parent and path.stat().st_size > 1000
    assert prefix.with_suffix(".pdf").read_bytes()[:5] == b"%PDF-"
    image = imread(prefix.with_suffix(".png"))
    height, width = image.shape[:2]
    assert image.shape[2] in (3, 4) and 400 <= height <= 4000 and 800 <= width <= 4000
    assert image[..., :3].std() > 0.05  # not a blank canvas


# ----------------------------------------------------------------------------- the numbers

@pytest.mark.parametrize("reset", ["soft", "hard"])
def test_responses_are_the_models_own_sfl(reset):
    prompts = spike_model(f"spike.reset={reset}").prompts
    clean, noisy = noise_responses(prompts, [0.0, 0.5], seed=3)
    # noise-free: exactly what the model computes
    assert torch.equal(clean.spikes, prompts.spike_train(add_noise=False).float())
    assert torch.equal(clean.binary, prompts.discretize(prompts.spike_train(add_noise=False)).float())
    # the noise is U + sigma * xi with one xi for every level, reproducible from the seed
    U = prompts.current.detach()
    assert torch.allclose(clean.currents, U.expand_as(clean.currents))
    again = noise_responses(prompts, [0.5], seed=3)[0]
    assert torch.equal(again.currents, noisy.currents) and torch.equal(again.spikes, noisy.spikes)
    assert not torch.equal(noise_responses(prompts, [0.5], seed=4)[0].currents, noisy.currents)
    # re-integrated pre-reset potential: fires exactly where H >= threshold, and resets to the stored v
    for r in (clean, noisy):
        assert torch.equal(r.spikes, (r.v_pre >= prompts.v_threshold).float())
        after = r.v_pre - r.spikes * prompts.v_threshold if reset == "soft" else r.v_pre * (1 - r.spikes)
        assert torch.allclose(after, r.v_post, atol=1e-5)
    assert torch.equal(pre_reset_potential(torch.ones(3, 2), torch.zeros(3, 2)), torch.ones(3, 2))


def test_hamming_zero_without_noise_and_growing_with_it():
    prompts = spike_model().prompts
    levels = [0.0, 0.05, 0.2, 0.5, 1.0]
    flips = torch.stack([torch.stack([flip_fraction(r.binary, rs[0].binary).mean() for r in rs])
                         for rs in (noise_responses(prompts, levels, seed) for seed in range(3))]).mean(0)
    assert flips[0] == 0
    assert torch.all(flips[1:] > flips[:-1]), flips


def test_sfl_flips_fewer_bits_than_direct_binarisation():
    prompts = spike_model("spike.time_steps=8").prompts
    sfl, direct = [], []
    for seed in range(3):
        clean, noisy = noise_responses(prompts, [0.0, 0.3], seed)
        sfl.append(flip_fraction(noisy.binary, clean.binary).mean())
        direct.append(flip_fraction(noisy.direct, clean.direct).mean())
    # T = 8 steps average the noise: well under the one-step flip rate (about 0.09 vs 0.22 here)
    assert torch.stack(sfl).mean() < 0.7 * torch.stack(direct).mean()
    # without noise both rules agree on every bit (the boundary is v_threshold * rate_threshold)
    assert torch.equal(clean.binary, clean.direct)


def test_small_metrics_by_hand():
    tokens = torch.ones(2, 3, 4)
    tokens[1] *= 2
    assert torch.allclose(relative_l2_change(tokens, 0.5 * torch.ones(2, 3, 4)), torch.tensor([0.5, 0.25]))
    binary = torch.zeros(2, 3, 4)
    binary[0, 0] = 1  # 4 of layer 0's 12 bits
    assert torch.allclose(sparsity(binary), torch.tensor([8 / 12, 1.0]))
    assert torch.allclose(flip_fraction(binary, torch.zeros(2, 3, 4)), torch.tensor([4 / 12, 0.0]))
    spikes = torch.zeros(4, 2, 3, 4)
    spikes[:2, 1] = 1
    assert torch.allclose(firing_rate(spikes), torch.tensor([0.0, 0.5]))


def test_pick_neurons_near_and_far():
    current = torch.linspace(0, 1, 2 * 3 * 5).reshape(2, 3, 5)[torch.randperm(2)]
    picked = pick_neurons(current, 0.5, 4)
    values = [float(current[n.layer, n.token, n.channel]) for n in picked]
    assert [n.near for n in picked] == [True, True, False, False]
    assert len({n[:3] for n in picked}) == 4
    assert abs(values[0] - 0.5) == pytest.approx(float((current - 0.5).abs().min()), abs=1e-6)
    assert abs(values[1] - 0.6) == pytest.approx(float((current - 0.6).abs().min()), abs=1e-6)
    assert values[2:] == [float(current.max()), float(current.min())]
    assert len(pick_neurons(current, 0.5, 100)) == current.numel()


def test_bad_numbers_are_refused():
    with pytest.raises(NVPTError, match="noise level -0.1"):
        check_noise_levels([0.1, -0.1])
    with pytest.raises(NVPTError, match="finite"):
        check_noise_levels([float("nan")])
    with pytest.raises(NVPTError, match="results.json"):
        accuracy_curves({"sets": {}})
    with pytest.raises(NVPTError, match="Signal Filtering Layer"):
        noise_responses(spike_model("spike.filter=none").prompts, [0.1])


# ----------------------------------------------------------------------------- the figures

def test_spike_figures_are_written(tmp_path):
    prompts = spike_model().prompts
    reference, *responses = noise_responses(prompts, [0.0, 0.0, 0.3, 1.0], seed=0)
    neurons = pick_neurons(prompts.current, reference.boundary, 3)
    prefix = tmp_path / "membrane_potential"
    check_written(plot_membrane_potential(responses, reference, neurons, prefix, title="tiny"), prefix)

    vpt = torch.empty(prompts.shape).uniform_(-0.2, 0.2)
    prefix = tmp_path / "sub" / "binary_prompts"  # a folder that does not exist yet
    check_written(plot_binary_prompts(responses, reference, vpt, "VPT init", prefix, spike_scale=prompts.scale,
                                      max_layers=2, max_channels=16), prefix)
    with pytest.raises(NVPTError, match="must match"):
        plot_binary_prompts(responses, reference, vpt[:1], "VPT init", tmp_path / "bad")
    with pytest.raises(NVPTError, match="noise-free"):
        plot_binary_prompts(responses, responses[-1], vpt, "VPT init", tmp_path / "bad")

    prefix = tmp_path / "firing_rates"
    check_written(plot_firing_rates(reference, responses[1], prefix, target_rate=0.3), prefix)
    assert not list(tmp_path.glob("bad*")) and not list(tmp_path.rglob("*.tmp"))


def test_accuracy_curves_and_figure(tmp_path):
    spike = summarize(80.0, {"gaussian@0.3": 60.0, "gaussian@0.1": 75.0, "gaussian_noise@2": 66.0,
                             "gaussian_noise@1": 70.0}) | {"method": "spike_nvpt"}
    vpt = summarize(82.0, {"gaussian@0.1": 70.0, "gaussian@0.3": 40.0}) | {"method": "vpt_deep"}
    curves = accuracy_curves(spike)
    assert curves == {"gaussian": [(0.0, 80.0), (0.1, 75.0), (0.3, 60.0)],
                      "gaussian_noise": [(0.0, 80.0), (1.0, 70.0), (2.0, 66.0)]}
    assert accuracy_curves(json.loads(json.dumps(vpt))) == {"gaussian": [(0.0, 82.0), (0.1, 70.0), (0.3, 40.0)]}
    prefix = tmp_path / "accuracy_vs_noise"
    check_written(plot_accuracy_vs_noise({"spike-s0": spike, "vpt-s0": vpt, "vpt-s1": vpt}, prefix), prefix)
    with pytest.raises(NVPTError, match="no runs"):
        plot_accuracy_vs_noise({}, prefix)


# ----------------------------------------------------------------------------- the tool

@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Finished tiny runs side by side: spike_nvpt and vpt_deep (1 epoch each)."""
    out = tmp_path_factory.mktemp("runs") / "demo"
    made = {}
    for method in ("spike_nvpt", "vpt_deep"):
        cfg = tiny_cfg(*RUN_OPTS, f"prompt.method={method}", f"output_dir={out}", f"run_name={method}")
        made[method] = run_training(cfg, log=lambda m: None, show_progress=False).run_dir
    return made


@pytest.fixture(scope="module")
def tool_runs(runs, tmp_path_factory):
    """The tool on the trained run, and with no run argument in a folder without runs/ (demo), in parallel."""
    base = tmp_path_factory.mktemp("tool")
    (base / "empty").mkdir()
    calls = {"trained": ([str(runs["spike_nvpt"]), "--out", str(base / "trained"), "--neurons", "2",
                          "--noise", "0.5", "0"], ROOT),
             "demo": (["--out", str(base / "demo")], base / "empty")}
    procs = {name: subprocess.Popen([sys.executable, str(TOOL), *args], cwd=cwd, env=ENV, text=True,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for name, (args, cwd) in calls.items()}
    done = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=600)
        done[name] = (proc.returncode, stdout, stderr, base / name)
    return done


def test_tool_on_a_trained_run(tool_runs, runs):
    rc, stdout, stderr, out = tool_runs["trained"]
    assert rc == 0, stderr
    for name in FIGURES:
        for ext in ("png", "pdf"):
            assert (out / f"{name}.{ext}").stat().st_size > 1000
    assert f"trained run {runs['spike_nvpt']}" in stdout
    assert "spike_nvpt (spike_nvpt), vpt_deep (vpt_deep)" in stdout  # the sibling baseline is on the curves
    assert "VPT comparison: trained vpt_deep run vpt_deep" in stdout
    assert imread(out / "accuracy_vs_noise.png").shape[1] >= 800


def test_tool_falls_back_to_the_untrained_demo(tool_runs):
    rc, stdout, stderr, out = tool_runs["demo"]
    assert rc == 0, stderr
    assert "UNTRAINED prompts (initialisation" in stdout and "demo model" in stdout
    assert "accuracy_vs_noise: skipped" in stdout and "VPT comparison: VPT's init" in stdout
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{n}.{e}" for n in FIGURES[:3] for e in ("png", "pdf"))


@pytest.fixture(scope="module")
def tool():
    sys.path.insert(0, str(ROOT / "tools"))
    spec = importlib.util.spec_from_file_location("visualize_spikes_under_test", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_latest_spike_run_is_found(runs, tmp_path):
    from nvpt.robustness.runs import latest_run

    root = runs["spike_nvpt"].parent.parent
    assert latest_run(root, "spike_nvpt") == runs["spike_nvpt"]  # the vpt_deep run is not a candidate
    newer = tmp_path / "deeper" / "copy"
    shutil.copytree(runs["spike_nvpt"], newer)
    os.utime(newer / "checkpoint-best.safetensors", (2e9, 2e9))
    assert latest_run(tmp_path, "spike_nvpt") == newer
    assert latest_run(tmp_path / "missing", "spike_nvpt") is None


def _malformed_results(run_dir, tmp):
    (tmp / "results.json").write_text(json.dumps({"clean": 50.0}))
    return [str(run_dir), "--runs", str(tmp)]


BAD = {
    "no checkpoint": (lambda r, tmp: [str(tmp)], "no checkpoint-best.safetensors"),
    "baseline run": (lambda r, tmp: [str(r["vpt_deep"])], "prompt.method=vpt_deep run"),
    "negative noise": (lambda r, tmp: [str(r["spike_nvpt"]), "--noise", "0", "-0.2"], "noise level -0.2"),
    "no neurons": (lambda r, tmp: [str(r["spike_nvpt"]), "--neurons", "0"], "--neurons"),
    "unfinished --runs": (lambda r, tmp: [str(r["spike_nvpt"]), "--runs", str(tmp)], "has no results.json"),
    "malformed --runs": (lambda r, tmp: _malformed_results(r["spike_nvpt"], tmp),
                         "is not a results.json/robustness.json summary"),
}


@pytest.mark.parametrize("case", BAD)
def test_tool_bad_input_is_one_line(case, tool, runs, tmp_path, capsys):
    from nvpt.cli import run_main

    shutil.copy(runs["spike_nvpt"] / "config.yaml", tmp_path / "config.yaml")  # a run folder without checkpoints
    args, message = BAD[case]
    rc = run_main(tool.main, [*args(runs, tmp_path), "--out", str(tmp_path / "figures")])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err.startswith("error: ") and message in err and "\n" not in err, err
    assert not (tmp_path / "figures").exists()


def test_place_labels_keeps_crowded_labels_apart_and_inside():
    """Six labels around points closer together than a label is wide: a fixed offset (the old code) makes them
    overlap; place_labels puts each where it overlaps no other label and stays inside the axes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from nvpt.robustness.compare import place_labels

    fig = Figure(figsize=(4, 3))
    renderer = FigureCanvasAgg(fig).get_renderer()
    ax = fig.add_subplot()
    points = [(0.50 + 0.01 * i, 0.50 + 0.005 * (i % 2), f"label {i}", None) for i in range(6)] + [(0.99, 0.99, "corner", None)]
    ax.plot([x for x, *_ in points], [y for _, y, *_ in points], "o")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    fig.tight_layout()
    naive = [ax.annotate(t, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7) for x, y, t, _ in points]
    boxes = [a.get_window_extent(renderer) for a in naive]
    assert any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])  # the case is crowded
    for a in naive:
        a.remove()
    notes = place_labels(ax, points)
    assert [n.get_text() for n in notes] == [t for _, _, t, _ in points]
    assert len(ax.texts) == len(points)  # the tried and rejected offsets leave nothing behind
    boxes = [n.get_window_extent(renderer) for n in notes]
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    frame = ax.get_window_extent(renderer)
    assert all(frame.x0 <= b.x0 and b.x1 <= frame.x1 and frame.y0 <= b.y0 and b.y1 <= frame.y1 for b in boxes)
