"""tools/reproduce_paper.py: the plan and its GPU-time estimate, then a tiny run of two tasks that resumes.

The runs use the shipped task configs (configs/dtd.yaml, configs/natural/oxford_iiit_pet.yaml) on small
fixtures in torchvision's layouts with the full official lists (data.vtab1k=false) and the tiny ViT, so
every run takes about a second; the VTAB-1k sizes themselves are tested in test_torchvision_tasks.py.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import torchvision_layouts as layouts
from conftest import TINY, run_tool
from nvpt.config import load_config
from nvpt.cost import Assumptions, checkpoint_bytes, describe, figure, forward_flops, run_cost, with_figures
from nvpt.errors import NVPTError
from nvpt.models import build_model
from nvpt.paper import TASKS, estimate_parts, plan

ROOT = Path(__file__).resolve().parent.parent
TINY_MODEL = [o for o in TINY if not o.startswith("model.num_classes=")]


def run_paper(monkeypatch, capsys, *argv) -> tuple[int, str, str]:
    return run_tool(monkeypatch, capsys, "reproduce_paper", *argv)


def test_vit_b16_forward_flops():
    """Every matmul of ViT-B/16 on 196 patches + class token + 10 prompts, counted by hand."""
    cfg = load_config(ROOT / "configs/dtd.yaml")
    n, d, depth = 1 + 196 + 10, 768, 12
    linears = depth * 2 * (d * 3 * d + d * d + d * 4 * d + 4 * d * d)  # qkv, proj, fc1, fc2 per token
    expected = linears * n + depth * 4 * n * n * d + 2 * 196 * (3 * 16 * 16) * d + 2 * d * 47
    assert forward_flops(cfg) == expected
    assert 36e9 < expected < 38e9  # ViT-B/16 is 17.6 GMACs on 197 tokens
    assert forward_flops(load_config(ROOT / "configs/dtd.yaml", ["prompt.method=linear"])) < expected  # no prompt tokens


def test_run_cost_follows_the_work_and_the_assumptions():
    bare = Assumptions()  # no figure files: every figure is the stated default
    costs = {m: run_cost(load_config(ROOT / "configs/dtd.yaml", [f"prompt.method={m}"]), 100, bare).gpu_s
             for m in ("linear", "vpt_deep", "full")}
    assert costs["linear"] < costs["vpt_deep"] < costs["full"]
    cfg = load_config(ROOT / "configs/dtd.yaml")
    whole, half, none = (run_cost(cfg, e, bare) for e in (100, 50, 0))
    assert (whole.train_images, whole.val_images, whole.test_images, whole.eval_sets) == (1000, 0, 1880, 25)
    assert whole.gpu_s - half.gpu_s == pytest.approx(half.gpu_s - none.gpu_s)  # linear in the epochs left
    assert none.gpu_s == pytest.approx(1880 * 25 * forward_flops(cfg) / (989e12 * 0.35))  # the final evaluation only
    assert whole.seconds == pytest.approx(whole.gpu_s + whole.loader_s + whole.corruption_s + whole.io_s)
    # groups are expanded: `all` is 19 corruptions x 5 severities, `blur` 5 x 2
    suite = run_cost(load_config(ROOT / "configs/dtd.yaml", ["eval.corruptions=[all]"]), 0, bare)
    assert suite.eval_sets == 1 + 19 * 5 + 4 and suite.gpu_s == pytest.approx(none.gpu_s * 100 / 25)
    blur = run_cost(load_config(ROOT / "configs/dtd.yaml", ["eval.corruptions=[blur]", "eval.severities=[1,5]",
                                                            "eval.gaussian_std=[]"]), 0, bare)
    assert blur.eval_sets == 1 + 5 * 2
    # the loader: decode once (4 ms per JPEG over 4 workers), then 0.2 ms per cached image read in the training
    # process, + 0.05 s per epoch
    assert whole.loader_s == pytest.approx((1000 + 1880) * 4e-3 / 4 + 100 * (1000 * 0.2e-3 + 0.05) + 1880 * 0.2e-3)
    # corruption: 24 noisy sets x 1880 images x 0.02 ms, paid once per shared pass
    assert none.corruption_s == pytest.approx(24 * 1880 * 0.02e-3)
    assert run_cost(cfg, 0, bare, eval_share=12).corruption_s == pytest.approx(none.corruption_s / 12)
    assert run_cost(cfg, 10, bare, evaluate=False).corruption_s == 0
    # checkpoint I/O: full writes every parameter and AdamW's two moments at every checkpoint-last
    full = load_config(ROOT / "configs/dtd_full.yaml", ["prompt.method=full"])
    assert checkpoint_bytes(full)[1] == pytest.approx(3 * checkpoint_bytes(full)[0]) and checkpoint_bytes(full)[0] > 3e8
    assert run_cost(full, 10, bare).io_s > 50 * run_cost(cfg, 10, bare).io_s
    given = run_cost(cfg, 100, Assumptions(mfu=0.7, cached_ms=0.1))
    assert given.gpu_s == pytest.approx(whole.gpu_s / 2) and given.loader_s < whole.loader_s
    tune = run_cost(load_config(ROOT / "configs/natural/svhn.yaml", ["data.protocol=tune"]), 1)
    assert (tune.train_images, tune.val_images, tune.test_images) == (800, 200, 26032)


def test_estimate_reads_measured_figures_and_says_which(tmp_path):
    figures = tmp_path / "bench.json"
    figures.write_text(json.dumps({"device_name": "Test CPU", "date": "2026-12-02",
                                   "loader": {"uncached_images_per_s": 500.0, "cached_images_per_s": 10000.0},
                                   "io": {"write_mb_per_s": 1000.0}}))
    assume = with_figures(Assumptions(), figures, tmp_path / "none.json")
    assert figure(assume, "jpeg_ms") == (2.0, "measured on Test CPU on 2026-12-02 (make benchmark-eval)")
    assert figure(assume, "cached_ms")[0] == pytest.approx(0.1) and figure(assume, "mfu") == (0.35, "assumed")
    text = describe(assume)
    assert "[assumed]" in text and "cached loading per image, whole batches in the training process: 0.1 ms [measured on Test CPU" in text
    assert figure(with_figures(Assumptions(jpeg_ms=3.0), figures), "jpeg_ms") == (3.0, "given")
    figures.write_text("{not json")
    with pytest.raises(NVPTError, match="cannot read .*bench.json"):
        with_figures(Assumptions(), figures)


def test_loader_and_corruption_are_at_most_a_quarter_of_the_paper_on_one_h200(tmp_path):
    """The shipped plan (every task, method and seed) under the shipped figures and stated assumptions."""
    plans = plan(list(TASKS), ["spike_nvpt", "vpt_deep", "linear", "full"], 3, [f"output_dir={tmp_path}"])
    parts = estimate_parts(plans, with_figures())
    share = (parts["loader"] + parts["corruption"]) / sum(parts.values())
    assert share <= 0.25, parts
    assert min(parts.values()) > 0


def test_estimate_only_plans_every_run_and_trains_nothing(tmp_path, monkeypatch, capsys):
    rc, out, err = run_paper(monkeypatch, capsys, "--estimate-only", "--out", tmp_path / "paper")
    assert rc == 0, err
    for task in TASKS:
        assert f"| {task} |" in out
    assert "| dtd | 1,000 / 1,880 | 0 | 0 | 12 |" in out and "| svhn | 1,000 / 26,032 | 0 | 0 | 12 |" in out
    assert "total (72 runs)" in out and "Estimated time still to spend" in out and "[assumed]" in out
    assert "| GPU | loader | corruption | I/O |" in out and "Shares of the total: GPU" in out
    assert not (tmp_path / "paper").exists()
    jobs = plan(["cifar100"], ["spike_nvpt", "vpt_deep", "linear", "full"], 3, [f"output_dir={tmp_path}"])["cifar100"]
    by_method = {job.method: job.cfg for job in jobs}
    assert by_method["full"].train.optimizer == "adamw" and by_method["vpt_deep"].train.optimizer == "sgd"  # own recipe
    assert {job.run_dir.name for job in jobs} >= {"cifar100-full-s2", "cifar100-spike_nvpt-s0"}


def test_bad_arguments_are_one_line(tmp_path, monkeypatch, capsys):
    for args, message in ((["--tasks", "imagenet"], "unknown task 'imagenet'"),
                          (["--methods", "prefix_tuning", "vpt_deep"], "unknown method 'prefix_tuning'"),
                          (["--methods", "spike_nvpt", "linear"], "--reference vpt_deep must be one of --methods"),
                          (["--seeds", "0"], "--seeds must be >= 1"),
                          (["--mfu", "0"], "--mfu must be in (0, 1]"),
                          (["seed=2"], "override 'seed=2' is not allowed"),
                          (["train.epoch=3"], "unknown config key 'train.epoch'"),
                          (["--tables-only"], "no finished comparison under")):
        rc, _, err = run_paper(monkeypatch, capsys, *args, "--out", tmp_path / "paper")
        assert rc == 2 and err.startswith("error: ") and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "paper").exists()


def test_tiny_paper_run_writes_tables_and_resumes(tmp_path, monkeypatch, capsys):
    data = tmp_path / "data"
    layouts.write_dtd(data, per_list=2)
    layouts.write_pets(data, trainval_per_class=2, test_per_class=1)
    overrides = [f"data.root={data}", "data.vtab1k=false", *TINY_MODEL, "data.num_workers=0", "train.epochs=1",
                 "train.warmup_epochs=0", "train.threads=1", "data.batch_size=32", "eval.gaussian_std=[0.2]",
                 "eval.corruptions=[shot_noise]", "eval.severities=[5]"]
    out = tmp_path / "paper"
    args = [*overrides, "--methods", "linear", "vpt_deep", "--seeds", "2", "--out", out]
    both = ["--tasks", "dtd", "oxford_iiit_pet"]
    rc, first, err = run_paper(monkeypatch, capsys, *args, *both)
    assert rc == 0, err
    assert first.index("Estimated time") < first.index("training")  # the estimate comes before any training
    assert "| dtd | 3,760 / 1,880 | 0 | 0 | 4 |" in first  # the estimate counts the official lists (vtab1k=false)
    results = (out / "results.md").read_text()
    comps = {t: json.loads((out / f"compare-{t}" / "comparison.json").read_text()) for t in ("dtd", "oxford_iiit_pet")}
    for task, comp in comps.items():
        acc, gain = comp["accuracy"]["linear"], comp["gain"]["linear"]
        assert comp["seeds"] == [0, 1] and comp["sets"] == ["clean", "shot_noise@5", "gaussian@0.2", "family:noise", "mean_corrupted"]
        assert f"| {task} | {acc['clean']['mean']:.2f} / {acc['mean_corrupted']['mean']:.2f} |" in results
        assert f"{gain['mean_corrupted']['mean']:+.2f} [{gain['mean_corrupted']['ci95_low']:+.2f}," in results
    assert "| mean over tasks |" in results and "### oxford_iiit_pet" in results
    saved = load_config(out / "dtd-vpt_deep-s1" / "config.yaml")
    assert saved.eval.corruption_table == "imagenet" and saved.seed == 1  # the ImageNet-C constants

    # stopped before one run's evaluation ended: no results.json. A restart plans to resume that run (the
    # comparison resumes it exactly: test_compare.py) and to reuse the 7 others.
    (out / "oxford_iiit_pet-vpt_deep-s1" / "results.json").unlink()
    rc, status, err = run_paper(monkeypatch, capsys, *args, *both, "--estimate-only")
    assert rc == 0, err
    assert "| dtd | 3,760 / 1,880 | 4 | 0 | 0 | 0.00 h | 0.00 h | 0.00 h | 0.00 h | 0.0 h |" in status and "| oxford_iiit_pet | 3,680 / 3,669 | 3 | 1 | 0 |" in status
    (out / "results.md").unlink()
    rc, tables, err = run_paper(monkeypatch, capsys, *args, *both, "--tables-only")
    assert rc == 0 and "Estimated" not in tables and (out / "results.md").read_text().split("\n", 3)[3] == results.split("\n", 3)[3]


def test_unknown_data_has_no_estimate():
    with pytest.raises(NVPTError, match=r"no split sizes known for data.name=textures"):
        run_cost(load_config(None, ["data.name=textures"]), 1)


@pytest.mark.parametrize("method", ["bitfit", "adapter", "lora", "ssf", "vpt_deep"])
def test_checkpoint_bytes_count_what_the_method_trains(method):
    """checkpoint-best holds every trainable parameter in float32: the PEFT baselines' own parameters (biases,
    adapters, low-rank factors, scales) too, counted on the built model, not only the head."""
    cfg = load_config(None, TINY + [f"prompt.method={method}"])
    model = build_model(cfg)
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    head = sum(p.numel() for p in model.backbone.get_classifier().parameters())
    assert trained > head  # the method trains more than its head
    best, last = checkpoint_bytes(cfg)
    assert best == 4 * trained
    assert last == pytest.approx(best * 2)  # SGD with momentum: one optimizer slot
