"""Offline pretraining: the procedural generator, the pretraining tool, its resume and its export."""
from __future__ import annotations

import re
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from conftest import tiny_cfg
from nvpt.config import SYNTHETIC_FAMILIES, dump_config
from nvpt.data.synthetic import class_spec, render
from nvpt.engine.checkpoint import tensors_sha256
from nvpt.engine.restore import load_run
from nvpt.engine.run import prepare_data
from nvpt.errors import NVPTError
from nvpt.models import build_model
from test_reliability import KILL_AT_STEP, ToolServer, assert_same_run, read_metrics

# A tiny pretraining run: 10 synthetic classes (every family twice), 6 images each, 16-px renders.
PRETRAIN = ["data.name=synthetic", "data.synthetic_classes=10", "data.train_per_class=6", "data.test_per_class=2",
            "data.val_fraction=0.34", "data.crop_size=16", "data.transform=fgvc", "data.crop_scale=[0.5, 1.0]",
            "data.random_grayscale=0.25", "data.num_workers=0", "data.batch_size=12", "model.num_classes=null",
            "prompt.method=full", "train.optimizer=adamw", "train.base_lr=0.01", "train.weight_decay=0.05",
            "train.epochs=3", "train.warmup_epochs=1", "train.threads=1", "eval.gaussian_std=[]"]


@pytest.mark.parametrize("family", SYNTHETIC_FAMILIES)
def test_generator_is_a_pure_function_of_the_seed(family):
    label = SYNTHETIC_FAMILIES.index(family)  # families take turns: class k is family k mod 5
    assert class_spec(0, label, SYNTHETIC_FAMILIES)[0] == family
    a = render(3, "train", label, 7, 32)
    assert a.dtype == np.uint8 and a.shape == (32, 32, 3)
    assert np.array_equal(a, render(3, "train", label, 7, 32))  # same seed, same image
    assert a.std() > 2  # not a flat image
    assert not np.array_equal(a, render(4, "train", label, 7, 32))  # another generator seed, another image
    assert not np.array_equal(a, render(3, "train", label, 8, 32))  # another index of the class
    assert not np.array_equal(a, render(3, "test", label, 7, 32))  # splits never share an image


def test_generator_output_does_not_depend_on_global_rng_or_order():
    first = render(0, "val", 12, 1, 24)
    np.random.seed(123)
    torch.manual_seed(123)
    for k in range(5):  # other renders in between change nothing
        render(0, "train", k, 0, 24)
    assert np.array_equal(first, render(0, "val", 12, 1, 24))


def test_synthetic_dataset_splits_and_labels():
    cfg = tiny_cfg(*PRETRAIN)
    bundle, _ = prepare_data(cfg)
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (60, 20, 20)
    assert bundle.num_classes == cfg.model.num_classes == 10
    assert bundle.class_names[0].startswith("dead_leaves") and bundle.class_names[1].startswith("spectral")
    image, label = bundle.test[5]
    assert image.shape == (3, 32, 32) and 0 <= image.min() and image.max() <= 1 and label == 2
    again, _ = prepare_data(tiny_cfg(*PRETRAIN))
    assert torch.equal(bundle.test[5][0], again.test[5][0])  # evaluation images are deterministic


def test_bad_synthetic_keys_are_one_clear_error():
    with pytest.raises(NVPTError, match="synthetic_families"):
        tiny_cfg(*PRETRAIN, "data.synthetic_families=[clouds]")
    with pytest.raises(NVPTError, match="crop_scale"):
        tiny_cfg(*PRETRAIN, "data.crop_scale=[0.9, 0.2]")


def test_a_few_pretraining_steps_lower_the_loss():
    cfg = tiny_cfg(*PRETRAIN, "data.synthetic_classes=5", "data.transform=vtab")
    bundle, _ = prepare_data(cfg)
    torch.manual_seed(0)
    model = build_model(cfg)
    images = torch.stack([bundle.train[i][0] for i in range(len(bundle.train))]) * 2 - 1
    labels = torch.tensor([bundle.train[i][1] for i in range(len(bundle.train))])
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-3)
    assert all(p.requires_grad for p in model.backbone.parameters())  # full: the backbone itself trains

    def loss():
        return torch.nn.functional.cross_entropy(model(images), labels)

    model.train()
    before = loss().item()
    for _ in range(15):
        optimizer.zero_grad()
        loss().backward()
        optimizer.step()
    assert loss().item() < 0.7 * before


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = ToolServer(tmp_path_factory.mktemp("tool-io"))
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def pretrain_config(tmp_path_factory):
    path = tmp_path_factory.mktemp("config") / "pretrain.yaml"
    dump_config(tiny_cfg(*PRETRAIN), path)
    return path


@pytest.fixture(scope="module")
def pretrained(server, pretrain_config, tmp_path_factory):
    out = tmp_path_factory.mktemp("pretrain")
    done = server.run("pretrain.py", pretrain_config, f"output_dir={out}", "run_name=ref")
    assert done.rc == 0, done.stderr[-3000:]
    return out / "ref"


def test_interrupted_pretraining_resumes_exactly(server, pretrain_config, pretrained, tmp_path):
    run_dir = tmp_path / "cut"
    killed = server.run("pretrain.py", pretrain_config, f"output_dir={tmp_path}", "run_name=cut",
                        pre=KILL_AT_STEP.format(epoch=1, step=2))
    assert killed.rc == -signal.SIGKILL, killed.stderr[-2000:]
    assert len(read_metrics(run_dir)) == 1 and not (run_dir / "backbone.safetensors").exists()
    resumed = server.run("pretrain.py", pretrain_config, f"output_dir={tmp_path}", f"train.resume={run_dir}")
    assert resumed.rc == 0, resumed.stderr[-3000:]
    assert_same_run(run_dir, pretrained)
    a, b = (load_file(str(d / "backbone.safetensors")) for d in (run_dir, pretrained))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # the exported weights, bit for bit


def test_exported_backbone_loads_through_pretrained_file(pretrained, server, tmp_path):
    exported = pretrained / "backbone.safetensors"
    trained = load_run(pretrained).model.backbone.state_dict()
    weights = load_file(str(exported))
    assert weights.keys() == trained.keys()
    # a prompt-tuning config on another task with those weights: the frozen backbone is the pretrained one
    cfg = tiny_cfg("prompt.method=vpt_deep", "model.num_classes=7", f"model.pretrained_file={exported}")
    model = build_model(cfg)
    state = model.backbone.state_dict()
    for name, tensor in trained.items():
        if not name.startswith("head."):  # the head is re-made for 7 classes
            assert torch.equal(state[name], tensor), name
    assert state["head.weight"].shape == (7, 48)
    # and the export tool writes the same file from the run folder
    again = tmp_path / "again.safetensors"
    done = server.run("export_backbone.py", pretrained, again)
    assert done.rc == 0, done.stderr[-2000:]
    copy = load_file(str(again))
    assert copy.keys() == weights.keys() and all(torch.equal(copy[k], weights[k]) for k in copy)
    with safe_open(str(again), "pt") as f, safe_open(str(exported), "pt") as g:
        assert f.metadata() == g.metadata() and f.metadata()["data"] == "synthetic"


def test_pretrain_refuses_prompt_methods_before_making_a_folder(server, pretrain_config, tmp_path):
    done = server.run("pretrain.py", pretrain_config, f"output_dir={tmp_path}", "prompt.method=vpt_deep")
    assert done.rc == 2 and done.lines()[-1].startswith("error: pretraining trains the whole backbone")
    assert not any(tmp_path.iterdir())


def test_preview_writes_a_contact_sheet_and_refuses_other_data(server, pretrain_config, tmp_path):
    sheet = tmp_path / "sheet.png"
    done = server.run("pretrain.py", pretrain_config, "--preview", sheet)
    assert done.rc == 0, done.stderr[-2000:]
    from PIL import Image

    with Image.open(sheet) as image:  # 8 columns of 16-px renders, 10 rows (one per class), 1-px padding
        assert image.size == (8 * 17 + 1, 10 * 17 + 1)
    refused = server.run("pretrain.py", pretrain_config, "--preview", tmp_path / "x.png", "data.name=textures")
    assert refused.rc == 2 and "data.name=textures" in refused.lines()[-1]
    assert not (tmp_path / "x.png").exists()


def test_backbone_sha256_is_of_the_weights_not_of_the_path(pretrained, server, tmp_path):
    """Two identical runs in other folders, exported to other paths, print (and store) the same sha256."""
    twin = Path(shutil.copytree(pretrained, tmp_path / "twin"))
    digests = []
    for run, out in ((pretrained, tmp_path / "a.safetensors"), (twin, tmp_path / "sub" / "b.safetensors")):
        done = server.run("export_backbone.py", run, out)
        assert done.rc == 0, done.stderr[-2000:]
        digest = re.search(r"sha256 ([0-9a-f]{64})", done.stdout).group(1)
        with safe_open(str(out), "pt") as f:
            assert f.metadata()["sha256"] == digest
        digests.append(digest)
    assert digests[0] == digests[1] == tensors_sha256(load_file(str(pretrained / "backbone.safetensors")))


def test_export_backbone_never_overwrites_the_run_checkpoint(pretrained, server, tmp_path):
    run = Path(shutil.copytree(pretrained, tmp_path / "run"))
    for name in ("checkpoint-best.safetensors", "checkpoint-last.safetensors"):
        before = (run / name).read_bytes()
        done = server.run("export_backbone.py", run, run / name)
        assert done.rc == 2 and re.search(rf"error: .*would overwrite {name} of the run in", done.lines()[-1]), done.stderr
        assert (run / name).read_bytes() == before
    assert load_run(run).cfg.prompt.method == "full"  # the run is still readable
