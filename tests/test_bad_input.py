"""Malformed input at every user-facing entry point ends in one clear line, never a traceback.

Tools (tools/*.py, run as processes through the fork server of test_reliability): exit status 2,
stderr holds exactly one non-empty line, it starts with "error:" and names the problem; `--debug`
(or NVPT_DEBUG=1) shows the traceback instead. Exit status 1 means run_main caught an exception
that is not an NVPTError, i.e. a bug with an unhelpful message, so it fails these tests too.
In-process APIs (load_config, build_model, build_datasets) raise NVPTError naming the problem.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from conftest import TINY, tiny_cfg
from nvpt.config import dump_config, load_config
from nvpt.data import build_datasets
from nvpt.errors import NVPTError
from nvpt.models import build_model
from test_reliability import Outcome, RunsCode, ToolServer, real_run

# vpt_deep: each row tests its own input; what spike_nvpt adds (SpikingJelly's import, the SFL's
# log line) is covered once, by test_error_after_spiking_import_is_still_one_line.
BASE = [*TINY, "data.name=textures", "data.crop_size=32", "data.train_per_class=2", "data.test_per_class=1",
        "data.val_fraction=0.0", "data.num_workers=0", "data.batch_size=8", "model.num_classes=null",
        "prompt.method=vpt_deep", "train.epochs=1", "train.warmup_epochs=0", "train.threads=1",
        "eval.gaussian_std=[0.1]"]


def fill(text: str, paths: dict[str, str]) -> str:
    """'{name}' -> paths[name]; YAML braces such as '{embed_dim: 48}' stay as they are."""
    return re.sub(r"\{(\w+)\}", lambda m: paths.get(m.group(1), m.group(0)), text)


def assert_one_line_error(outcome: Outcome, pattern: str) -> None:
    lines = outcome.lines()
    assert "Traceback" not in outcome.stderr, outcome.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), outcome.stderr[-3000:]
    assert outcome.rc == 2, f"exit {outcome.rc} (1: an exception that is not an NVPTError): {lines[0]}"
    assert re.search(pattern, lines[0]), lines[0]


def write_png(path: Path, colour=(120, 60, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (20, 20), colour).save(path)
    return path


def image_folder(root: Path, classes=("a", "b"), test_classes=None) -> Path:
    for split, names in (("train", classes), ("test", test_classes or classes)):
        for c, name in enumerate(names):
            for i in range(3):
                write_png(root / split / name / f"{i}.png", (60 * c, 100, 30 * i))
    return root


@pytest.fixture(scope="module")
def paths(tmp_path_factory) -> dict[str, str]:
    """Every malformed input the tables below refer to, by name."""
    tmp = tmp_path_factory.mktemp("inputs")
    p: dict[str, Path] = {"tmp": tmp, "runs": tmp / "runs", "nodata": tmp / "nodata"}
    p["cfg"] = tmp / "tiny.yaml"
    dump_config(tiny_cfg(*BASE, f"output_dir={p['runs']}"), p["cfg"])

    texts = {
        "yaml_syntax": "train: {epochs: 3\n",
        "yaml_tag": '_base_: tiny.yaml\nseed: !!python/object/apply:os.system ["true"]\n',
        "yaml_list": "- train.epochs=3\n",
        "yaml_unknown": "_base_: tiny.yaml\ntrain: {epoch: 3}\n",
        "yaml_section": "_base_: tiny.yaml\ntrainer: {epochs: 3}\n",
        "yaml_type": "_base_: tiny.yaml\ndata: {batch_size: big}\n",
        "yaml_base_missing": "_base_: missing_parent.yaml\n",
        "yaml_loop_a": "_base_: yaml_loop_b.yaml\n",
        "yaml_loop_b": "_base_: yaml_loop_a.yaml\n",
    }
    for name, text in texts.items():
        p[name] = tmp / f"{name}.yaml"
        p[name].write_text(text)

    p["good_images"] = image_folder(tmp / "good_images")
    p["corrupt_images"] = image_folder(tmp / "corrupt_images")
    p["bad_jpg"] = p["corrupt_images"] / "train" / "a" / "bad.jpg"
    p["bad_jpg"].write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG " * 20)
    p["truncated_images"] = image_folder(tmp / "truncated_images")
    whole = write_png(tmp / "whole.png").read_bytes()
    (p["truncated_images"] / "test" / "b" / "cut.png").write_bytes(whole[: len(whole) // 2])
    p["empty_class"] = image_folder(tmp / "empty_class")
    for image in (p["empty_class"] / "train" / "b").iterdir():
        image.unlink()
    p["no_classes"] = tmp / "no_classes"
    (p["no_classes"] / "train").mkdir(parents=True)
    (p["no_classes"] / "test").mkdir()
    p["class_mismatch"] = image_folder(tmp / "class_mismatch", test_classes=("a", "c"))
    p["vtab"] = tmp / "vtab"
    (p["vtab"] / "task").mkdir(parents=True)
    (p["vtab"] / "task" / "train800val200.txt").write_text("\n")
    write_png(p["vtab"] / "task" / "x.png")
    (p["vtab"] / "task" / "test.txt").write_text("x.png 0\n")

    p["garbage"] = tmp / "garbage.safetensors"
    p["garbage"].write_bytes(b"\x00\x01 not a tensor file " * 50)
    p["garbage_pth"] = tmp / "garbage.pth"
    p["garbage_pth"].write_bytes(b"PK\x03\x04 not a zip either " * 50)
    p["empty_dir"] = tmp / "empty_run"
    p["empty_dir"].mkdir()
    (p["runs"] / "taken").mkdir(parents=True)
    (p["runs"] / "taken" / "metrics.jsonl").write_text('{"epoch": 0}\n')
    p["a_file"] = tmp / "a_file.txt"
    p["a_file"].write_text("not a folder\n")
    return {k: str(v) for k, v in p.items()}


# --------------------------------------------------------------------------- tools/train.py

NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")

# (row id, arguments after tools/train.py ({name} = paths[name]), regex the error line must match).
# Rows that start from {cfg} also get run_name=<row id> unless they set one: no two share a run folder.
TRAIN_ROWS = [
    # command line
    ("no-arguments", [], r"the following arguments are required: config"),
    ("unknown-option", ["{cfg}", "--epochs=3"], r"unrecognized arguments: --epochs=3"),
    ("missing-config", ["{tmp}/nope.yaml"], r"config file not found: .*nope\.yaml"),
    ("config-is-a-folder", ["{tmp}"], r"config file not found"),
    # config files
    ("yaml-syntax", ["{yaml_syntax}"], r"yaml_syntax\.yaml: not valid safe YAML"),
    ("yaml-python-tag", ["{yaml_tag}"], r"Python object tags are refused"),
    ("yaml-not-a-mapping", ["{yaml_list}"], r"expected a mapping of config keys"),
    ("yaml-unknown-key", ["{yaml_unknown}"], r"unknown config key 'train\.epoch'; did you mean: train\.epochs"),
    ("yaml-unknown-section", ["{yaml_section}"], r"unknown config key 'trainer'"),
    ("yaml-wrong-type", ["{yaml_type}"], r"'data\.batch_size' must be an integer, got 'big'"),
    ("yaml-missing-base", ["{yaml_base_missing}"], r"config file not found: .*missing_parent\.yaml"),
    ("yaml-base-loop", ["{yaml_loop_a}"], r"_base_ inheritance loops back"),
    # overrides: unknown keys, wrong types, zero / negative sizes, unknown choices
    ("override-without-equals", ["{cfg}", "epochs"], r"override 'epochs' must look like key\.sub=value"),
    ("override-unknown-key", ["{cfg}", "train.epoch=3"], r"unknown config key 'train\.epoch'.*train\.epochs"),
    ("int-given-a-word", ["{cfg}", "train.epochs=three"], r"'train\.epochs' must be an integer, got 'three'"),
    ("int-given-a-fraction", ["{cfg}", "train.epochs=2.5"], r"'train\.epochs' must be an integer, got 2\.5"),
    ("bool-given-a-word", ["{cfg}", "model.pretrained=maybe"], r"'model\.pretrained' must be true or false"),
    ("list-given-a-number", ["{cfg}", "eval.gaussian_std=0.1"], r"'eval\.gaussian_std' must be a list of floats"),
    ("float-nan", ["{cfg}", "train.base_lr=.nan"], r"'train\.base_lr' must be a finite number"),
    ("null-not-allowed", ["{cfg}", "train.epochs=null"], r"'train\.epochs' may not be null"),
    ("zero-epochs", ["{cfg}", "train.epochs=0"], r"'train\.epochs' must be >= 1, got 0"),
    ("negative-batch-size", ["{cfg}", "data.batch_size=-4"], r"'data\.batch_size' must be >= 1, got -4"),
    ("zero-eval-batch-size", ["{cfg}", "data.eval_batch_size=0"], r"'data\.eval_batch_size' must be >= 1"),
    ("negative-workers", ["{cfg}", "data.num_workers=-1"], r"'data\.num_workers' must be >= 0"),
    ("zero-image-size", ["{cfg}", "model.img_size=0"], r"'model\.img_size' must be >= 1"),
    ("negative-prompt-length", ["{cfg}", "prompt.length=-1"], r"'prompt\.length' must be >= 0"),
    ("zero-spike-prompts", ["{cfg}", "prompt.method=spike_nvpt", "prompt.length=0"],
     r"'prompt\.length' must be >= 1 for prompt\.method=spike_nvpt"),
    ("zero-time-steps", ["{cfg}", "spike.time_steps=0"], r"'spike\.time_steps' must be >= 1"),
    ("zero-threshold", ["{cfg}", "spike.v_threshold=0"], r"'spike\.v_threshold' must be > 0"),
    ("dropout-above-one", ["{cfg}", "prompt.dropout=1.5"], r"'prompt\.dropout' must be <= 1"),
    ("tiny-crop", ["{cfg}", "data.crop_size=0"], r"'data\.crop_size' must be >= 8"),
    ("zero-threads", ["{cfg}", "train.threads=0"], r"'train\.threads' must be >= 1"),
    ("unknown-method", ["{cfg}", "prompt.method=prefix_tuning"],
     r"'prompt\.method' must be one of linear, vpt_shallow, vpt_deep, spike_nvpt, full, bitfit, adapter, lora, ssf; got 'prefix_tuning'"),
    ("unknown-dataset", ["{cfg}", "data.name=imagenet"], r"'data\.name' must be one of .*got 'imagenet'"),
    ("unknown-corruption", ["{cfg}", "eval.corruptions=[fogg]"], r"unknown corruption 'fogg'"),
    ("unknown-severity", ["{cfg}", "eval.corruptions=[gaussian_noise]", "eval.severities=[9]"], r"severity .*got 9"),
    ("negative-sigma", ["{cfg}", "eval.gaussian_std=[-0.1]"], r"sigma must be .*got -0\.1"),
    ("mean-without-std", ["{cfg}", "data.mean=[0.5,0.5,0.5]"], r"data\.mean and data\.std must be given together"),
    # model
    ("unknown-timm-model", ["{cfg}", "model.name=vit_tiny_patch16_2244"],
     r"unknown timm model 'vit_tiny_patch16_2244' .*did you mean: vit_tiny_patch16_224"),
    ("timm-model-not-a-vit", ["{cfg}", "model.name=resnet18", "model.kwargs=null", "model.img_size=null"],
     r"'resnet18' is a ResNet, not a timm VisionTransformer"),
    ("unknown-timm-argument", ["{cfg}", "model.kwargs={bogus_arg: 1}"],
     r"timm cannot build 'vit_tiny_patch16_224' .*unexpected keyword argument 'bogus_arg'"),
    ("kwargs-not-a-mapping", ["{cfg}", "model.kwargs=[1, 2]"], r"'model\.kwargs' must be a YAML mapping"),
    # the patterns name the problem: every "timm cannot build" error repeats the kwargs dict, keys included
    ("kwargs-broken-yaml", ["{cfg}", "model.kwargs={embed_dim: 48"], r"'model\.kwargs' is not valid safe YAML"),
    ("zero-depth", ["{cfg}", "model.kwargs={patch_size: 8, depth: 0, embed_dim: 48, num_heads: 3}"],
     r"model\.kwargs depth=0 must be a positive integer"),
    ("image-smaller-than-patch", ["{cfg}", "model.img_size=4"], r"model\.img_size=4 is smaller than the 8 px patch"),
    ("missing-pretrained-file", ["{cfg}", "model.pretrained_file={tmp}/nope.safetensors"],
     r"weights file not found: .*nope\.safetensors"),
    ("garbage-pretrained-file", ["{cfg}", "model.pretrained_file={garbage_pth}"], r"cannot read weights file .*garbage\.pth"),
    ("hub-unreachable", ["{cfg}", "model.pretrained=true"], r"could not fetch pretrained weights .*model\.pretrained_file="),
    ("too-few-classes", ["{cfg}", "model.num_classes=2"], r"model\.num_classes=2 but the dataset has 20 classes"),
    ("two-channel-input", ["{cfg}", "model.in_chans=2"], r"model\.in_chans=2 is not supported"),
    # data
    ("crop-larger-than-photos", ["{cfg}", "data.crop_size=100000"], r"data\.crop_size=100000 does not fit"),
    ("mean-wrong-length", ["{cfg}", "data.mean=[0.5,0.5]", "data.std=[0.5,0.5]"],
     r"data\.mean has 2 values but the model takes 3 channels"),
    ("dtd-missing", ["{cfg}", "data.name=dtd", "data.root={nodata}"], r"dtd: dataset not found"),
    ("svhn-missing", ["{cfg}", "data.name=svhn", "data.root={nodata}"], r"svhn: dataset not found or corrupted in .*svhn"),
    ("caltech101-missing", ["{cfg}", "data.name=caltech101", "data.root={nodata}"],
     r"caltech101: dataset not found, looked in .*101_ObjectCategories"),
    ("vtab-without-task", ["{cfg}", "data.name=vtab"], r"'data\.task' must name the VTAB task folder"),
    ("vtab-missing", ["{cfg}", "data.name=vtab", "data.task=dtd", "data.root={nodata}"], r"vtab: task folder .* not found"),
    ("vtab-empty-list", ["{cfg}", "data.name=vtab", "data.task=task", "data.root={vtab}"],
     r"vtab: list file .*train800val200\.txt is empty"),
    ("fashion-mnist-missing", ["{cfg}", "data.name=fashion_mnist", "data.root={nodata}"],
     r"fashion_mnist: train-images-idx3-ubyte\.gz not found"),
    ("image-folder-missing", ["{cfg}", "data.name=image_folder", "data.root={nodata}"], r"image_folder: .*train not found"),
    ("image-folder-no-classes", ["{cfg}", "data.name=image_folder", "data.root={no_classes}"],
     r"has no class sub-folders"),
    ("image-folder-empty-class", ["{cfg}", "data.name=image_folder", "data.root={empty_class}"],
     r"class folder .*train/b holds no images"),
    ("image-folder-class-mismatch", ["{cfg}", "data.name=image_folder", "data.root={class_mismatch}"],
     r"must have the same class folders; they differ in: b, c"),
    ("corrupt-jpg", ["{cfg}", "data.name=image_folder", "data.root={corrupt_images}"], r"cannot read image .*bad\.jpg"),
    ("corrupt-jpg-in-a-worker", ["{cfg}", "data.name=image_folder", "data.root={corrupt_images}", "data.num_workers=1"],
     r"cannot read image .*bad\.jpg"),
    ("truncated-png", ["{cfg}", "data.name=image_folder", "data.root={truncated_images}"], r"cannot read image .*cut\.png"),
    # devices and run folders
    pytest.param("cuda-without-cuda", ["{cfg}", "train.device=cuda"], r"CUDA is not available", marks=NO_CUDA),
    ("resume-missing", ["{cfg}", "train.resume={tmp}/nope"], r"train\.resume=.*nope: no checkpoint"),
    ("resume-folder-without-anything", ["{cfg}", "train.resume={empty_dir}"], r"train\.resume=.*empty_run: no checkpoint"),
    ("resume-garbage", ["{cfg}", "train.resume={garbage}"], r"cannot read checkpoint .*garbage\.safetensors"),
    ("run-folder-exists", ["{cfg}", "output_dir={runs}", "run_name=taken"], r"already exists; pass train\.resume="),
    ("output-dir-is-a-file", ["{cfg}", "output_dir={a_file}"], r"a_file\.txt"),
]


def _row_id(row) -> str:
    return row.values[0] if hasattr(row, "values") else row[0]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = ToolServer(tmp_path_factory.mktemp("tool-io"))
    yield srv
    srv.close()


@pytest.mark.parametrize("row_id, args, pattern", TRAIN_ROWS, ids=[_row_id(r) for r in TRAIN_ROWS])
def test_train_bad_input_is_one_line(server, paths, row_id, args, pattern):
    argv = [fill(a, paths) for a in args]
    if argv and argv[0] == paths["cfg"] and not any(a.startswith("run_name=") for a in argv):
        argv.append(f"run_name={row_id}")
    assert_one_line_error(server.run("train.py", *argv), pattern)


def test_error_after_spiking_import_is_still_one_line(server, paths):
    """spike_nvpt imports SpikingJelly (which logs its missing CuPy; torch warns about its
    torch.jit.script) and logs the Signal Filtering Layer backend. This run builds the spiking model,
    then meets a truncated test image while its test split is decoded into the data cache (with
    data.cache=off: in the final evaluation, after training): still one line."""
    done = server.run("train.py", paths["cfg"], "prompt.method=spike_nvpt", "data.name=image_folder",
                      f"data.root={paths['truncated_images']}", "run_name=spiking")
    assert_one_line_error(done, r"cannot read image .*cut\.png")
    after_training = server.run("train.py", paths["cfg"], "prompt.method=spike_nvpt", "data.name=image_folder",
                                f"data.root={paths['truncated_images']}", "data.cache=off", "run_name=spiking-uncached")
    assert_one_line_error(after_training, r"cannot read image .*cut\.png")


def test_debug_shows_the_traceback(server, paths):
    missing = f"{paths['tmp']}/nope.yaml"
    for extra, env in ((["--debug"], None), ([], {"NVPT_DEBUG": "1"})):
        done = server.run("train.py", missing, *extra, env=env)
        assert done.rc != 0
        assert "Traceback (most recent call last)" in done.stderr
        assert re.search(r"NVPTError: config file not found: .*nope\.yaml", done.stderr)
    deep = server.run("train.py", paths["cfg"], "data.name=image_folder", f"data.root={paths['corrupt_images']}",
                      "run_name=debug-deep", "--debug")
    assert deep.rc != 0 and "Traceback (most recent call last)" in deep.stderr
    assert "image_folder.py" in deep.stderr  # the frame that raised


def test_fork_server_errors_equal_a_fresh_interpreter(server, paths):
    """The table above runs in forked children; a real `python tools/train.py` prints the same."""
    args = [paths["cfg"], "train.epoch=3"]
    forked, real = server.run("train.py", *args), real_run("train.py", *args)
    assert (real.rc, real.lines()) == (forked.rc, forked.lines())
    debug = real_run("train.py", f"{paths['tmp']}/nope.yaml", "--debug")
    assert debug.rc != 0 and "Traceback (most recent call last)" in debug.stderr


# --------------------------------------------------------------------------- the other tools

@pytest.fixture(scope="module")
def trained(server, paths, tmp_path_factory) -> dict[str, str]:
    """paths plus finished one-epoch runs (spike_nvpt, vpt_deep) and damaged copies of the first."""
    out = tmp_path_factory.mktemp("trained")
    for method in ("spike_nvpt", "vpt_deep"):
        done = server.run("train.py", paths["cfg"], f"output_dir={out}", f"run_name={method}", f"prompt.method={method}")
        assert done.rc == 0, done.stderr[-3000:]
    p = {**paths, "spike_run": str(out / "spike_nvpt"), "vpt_run": str(out / "vpt_deep")}
    truncated = Path(shutil.copytree(out / "spike_nvpt", out / "truncated"))
    best = truncated / "checkpoint-best.safetensors"
    best.write_bytes(best.read_bytes()[: best.stat().st_size // 2])
    p["truncated_run"] = str(truncated)
    evil = Path(shutil.copytree(out / "spike_nvpt", out / "evil"))
    p["marker"] = str(out / "pwned")
    torch.save({"payload": RunsCode(Path(p["marker"]))}, evil / "checkpoint-best.safetensors")
    p["evil_run"] = str(evil)
    p["bad_json"] = str(out / "not_a_summary.json")
    Path(p["bad_json"]).write_text('{"clean": 50.0}\n')
    p["broken_json"] = str(out / "broken.json")
    Path(p["broken_json"]).write_text('{"clean": 50.0, \n')
    return p


# (tool, row id, arguments ({name} = trained[name]), regex the error line must match)
TOOL_ROWS = [
    ("eval_robustness.py", "no-arguments", [], r"the following arguments are required: run"),
    ("eval_robustness.py", "missing-run", ["{tmp}/nope"], r"no run folder or checkpoint at .*nope"),
    ("eval_robustness.py", "run-without-checkpoint", ["{empty_dir}"], r"has no checkpoint-best\.safetensors"),
    ("eval_robustness.py", "truncated-checkpoint", ["{truncated_run}"], r"cannot read checkpoint .*checkpoint-best"),
    ("eval_robustness.py", "zero-batch-size", ["{spike_run}", "--batch-size", "0"], r"--batch-size must be >= 1, got 0"),
    ("eval_robustness.py", "unknown-corruption", ["{spike_run}", "--corruptions", "fogg"], r"unknown corruption 'fogg'"),
    ("eval_robustness.py", "unknown-severity", ["{spike_run}", "--corruptions", "gaussian_noise", "--severities", "9"],
     r"severity .*got 9"),
    ("eval_robustness.py", "negative-sigma", ["{spike_run}", "--gaussian-std", "-0.1"], r"sigma must be .*got -0\.1"),
    ("eval_robustness.py", "sigma-not-a-number", ["{spike_run}", "--gaussian-std", "x"],
     r"argument --gaussian-std: invalid float value: 'x'"),
    ("eval_robustness.py", "unknown-table", ["{spike_run}", "--table", "svhn"], r"argument --table: invalid choice: 'svhn'"),
    ("eval_robustness.py", "negative-noise-seed", ["{spike_run}", "--noise-seed", "-1"], r"'eval\.seed' must be >= 0"),
    ("eval_robustness.py", "missing-reference", ["{spike_run}", "--reference", "{tmp}/nope"],
     r"no run folder or checkpoint at .*nope"),
    ("eval_robustness.py", "reference-not-a-summary", ["{spike_run}", "--reference", "{bad_json}"],
     r"not_a_summary\.json is not a results\.json/robustness\.json summary"),
    ("eval_robustness.py", "reference-broken-json", ["{spike_run}", "--reference", "{broken_json}"],
     r"cannot read .*broken\.json"),
    ("eval_robustness.py", "out-is-a-file", ["{spike_run}", "--out", "{a_file}"], r"a_file\.txt"),
    pytest.param("eval_robustness.py", "cuda-without-cuda", ["{spike_run}", "--device", "cuda"], r"CUDA is not available",
                 marks=NO_CUDA),
    ("export_prompts.py", "no-arguments", [], r"the following arguments are required: run"),
    ("export_prompts.py", "missing-run", ["{tmp}/nope"], r"no run folder or checkpoint at .*nope"),
    ("export_prompts.py", "not-a-spike-run", ["{vpt_run}"], r"vpt_deep"),
    ("export_prompts.py", "truncated-checkpoint", ["{truncated_run}"], r"cannot read checkpoint .*checkpoint-best"),
    ("export_prompts.py", "unknown-override", ["{spike_run}", "train.epoch=3"], r"unknown config key 'train\.epoch'"),
    ("export_prompts.py", "override-makes-another-model", ["{spike_run}", "prompt.length=6"],
     r"does not fit this model: wrong shape: prompts\.current"),
    ("export_prompts.py", "out-inside-a-file", ["{spike_run}", "--out", "{a_file}/p.safetensors"], r"a_file\.txt"),
    ("visualize_spikes.py", "missing-run", ["{tmp}/nope", "--out", "{tmp}/viz"], r"no run folder or checkpoint at .*nope"),
    ("visualize_spikes.py", "not-a-spike-run", ["{vpt_run}", "--out", "{tmp}/viz"], r"is a prompt\.method=vpt_deep run"),
    ("visualize_spikes.py", "truncated-checkpoint", ["{truncated_run}", "--out", "{tmp}/viz"], r"cannot read checkpoint"),
    ("visualize_spikes.py", "zero-neurons", ["{spike_run}", "--neurons", "0", "--out", "{tmp}/viz"],
     r"--neurons must be between 1 and 16 .*got 0"),
    ("visualize_spikes.py", "negative-seed", ["{spike_run}", "--seed", "-1", "--out", "{tmp}/viz"], r"--seed must be >= 0"),
    ("visualize_spikes.py", "negative-noise", ["{spike_run}", "--noise", "-0.1", "--out", "{tmp}/viz"],
     r"noise level -0\.1 is invalid"),
    ("visualize_spikes.py", "nan-noise", ["{spike_run}", "--noise", "nan", "--out", "{tmp}/viz"], r"noise level nan is invalid"),
    ("visualize_spikes.py", "out-is-a-file", ["{spike_run}", "--out", "{a_file}"], r"is a file; pass a folder"),
    ("visualize_spikes.py", "curve-run-missing", ["{spike_run}", "--runs", "{tmp}/nope", "--out", "{tmp}/viz"], r"nope"),
    ("benchmark.py", "no-arguments", [], r"the following arguments are required: config"),
    ("benchmark.py", "missing-config", ["{tmp}/nope.yaml"], r"config file not found: .*nope\.yaml"),
    ("benchmark.py", "unknown-override", ["{cfg}", "train.epoch=3"], r"unknown config key 'train\.epoch'"),
    ("benchmark.py", "zero-batch-size", ["{cfg}", "--batch-size", "0"], r"--batch-size must be >= 1"),
    ("benchmark.py", "zero-repeats", ["{cfg}", "--repeats", "0"], r"--repeats must be >= 1"),
    ("benchmark.py", "negative-warmup", ["{cfg}", "--warmup", "-1"], r"--warmup .*must be >= 0"),
    ("benchmark.py", "one-sfl-batch", ["{cfg}", "--sfl-batches", "8"], r"--sfl-batches needs at least two"),
    ("benchmark.py", "zero-time-steps", ["{cfg}", "--time-steps", "0"], r"--time-steps must be >= 1"),
    pytest.param("benchmark.py", "cuda-without-cuda", ["{cfg}", "--device", "cuda"], r"CUDA is not available", marks=NO_CUDA),
    ("compare.py", "no-arguments", [], r"the following arguments are required: config"),
    ("compare.py", "missing-config", ["{tmp}/nope.yaml"], r"config file not found: .*nope\.yaml"),
    ("compare.py", "unknown-method", ["{cfg}", "--methods", "prefix_tuning"], r"unknown method 'prefix_tuning' in --methods"),
    ("compare.py", "method-twice", ["{cfg}", "--methods", "vpt_deep", "vpt_deep", "--reference", "vpt_deep"],
     r"--methods lists a method twice"),
    ("compare.py", "reference-not-compared", ["{cfg}", "--methods", "vpt_deep", "linear", "--reference", "spike_nvpt"],
     r"--reference spike_nvpt must be one of --methods"),
    ("compare.py", "zero-seeds", ["{cfg}", "--seeds", "0"], r"--seeds must be >= 1, got 0"),
    ("compare.py", "override-of-its-own-key", ["{cfg}", "seed=3"], r"override 'seed=3' is not allowed"),
    ("compare.py", "unknown-override", ["{cfg}", "train.epoch=3"], r"unknown config key 'train\.epoch'"),
    ("compare.py", "variant-config-missing", ["{cfg}", "--methods", "vpt_deep", "{tmp}/nope.yaml", "--reference", "vpt_deep"],
     r"--methods .*nope\.yaml: config file not found"),
    ("export_backbone.py", "no-arguments", [], r"the following arguments are required: run, out"),
    ("export_backbone.py", "not-safetensors", ["{spike_run}", "{tmp}/backbone.pt"], r"must end in \.safetensors"),
    ("export_backbone.py", "not-a-full-run", ["{spike_run}", "{tmp}/backbone.safetensors"],
     r"is a spike_nvpt run; only a `full` run trains the backbone"),
    ("export_backbone.py", "missing-run", ["{tmp}/nope", "{tmp}/backbone.safetensors"], r"no run folder or checkpoint at"),
    ("sfl_smoke.py", "no-arguments", [], r"the following arguments are required: out_dir, report"),
    ("sfl_smoke.py", "unknown-device", ["{tmp}/run", "{tmp}/r.json", "--device", "tpu"], r"invalid choice: 'tpu'"),
    pytest.param("sfl_smoke.py", "cuda-without-cuda", ["{tmp}/run", "{tmp}/r.json"], r"--device cuda but CUDA is not available",
                 marks=NO_CUDA),
    ("demo.py", "unknown-method", ["--methods", "prefix_tuning"], r"unknown method 'prefix_tuning'"),
    ("demo.py", "unknown-override", ["train.epoch=1"], r"unknown config key 'train\.epoch'"),
]


def _tool_row_id(row) -> str:
    values = row.values if hasattr(row, "values") else row
    return f"{values[0][:-3]}-{values[1]}"


@pytest.mark.parametrize("tool, row_id, args, pattern", TOOL_ROWS, ids=[_tool_row_id(r) for r in TOOL_ROWS])
def test_tool_bad_input_is_one_line(server, trained, tool, row_id, args, pattern):
    assert_one_line_error(server.run(tool, *(fill(a, trained) for a in args)), pattern)


@pytest.mark.parametrize("tool, extra", [
    ("eval_robustness.py", []), ("export_prompts.py", []), ("export_backbone.py", ["{tmp}/b.safetensors"]),
    ("visualize_spikes.py", ["--out", "{tmp}/viz"]),
])
def test_tools_refuse_a_malicious_checkpoint(server, trained, tool, extra):
    """checkpoint-best.safetensors replaced by a pickle whose unpickling runs `touch <marker>`."""
    done = server.run(tool, trained["evil_run"], *(fill(a, trained) for a in extra))
    assert_one_line_error(done, r"cannot read checkpoint .*checkpoint-best\.safetensors")
    assert not Path(trained["marker"]).exists()


# --------------------------------------------------------------------------- load_config

CONFIG_ROWS = [
    # (row id, YAML file text or None, overrides, regex the NVPTError must match)
    ("unknown-key", None, ["train.epoch=3"], r"unknown config key 'train\.epoch'.*did you mean: train\.epochs"),
    ("unknown-key-in-file", "train: {epoch: 3}\n", [], r"unknown config key 'train\.epoch'"),
    ("unknown-section", "optim: {lr: 0.1}\n", [], r"unknown config key 'optim'"),
    ("section-not-a-mapping", "train: 3\n", [], r"unknown config key 'train'"),
    ("override-without-equals", None, ["train.epochs"], r"must look like key\.sub=value"),
    ("int-given-a-word", None, ["data.batch_size=many"], r"'data\.batch_size' must be an integer, got 'many'"),
    ("int-given-a-bool", None, ["data.batch_size=true"], r"'data\.batch_size' must be an integer, got True"),
    ("float-given-a-list", None, ["train.base_lr=[0.1]"], r"'train\.base_lr' must be a finite number"),
    ("float-infinite", None, ["spike.noise_std=.inf"], r"'spike\.noise_std' must be a finite number"),
    ("str-given-a-mapping", "model: {name: {a: 1}}\n", [], r"'model\.name' must be a string"),
    ("list-item-wrong-type", None, ["eval.severities=[1, two]"], r"'eval\.severities' must be an integer, got \[1, 'two'\]"),
    ("zero-batch-size", None, ["data.batch_size=0"], r"'data\.batch_size' must be >= 1, got 0"),
    ("negative-time-steps", None, ["spike.time_steps=-2"], r"'spike\.time_steps' must be >= 1, got -2"),
    ("negative-noise", None, ["spike.noise_std=-0.1"], r"'spike\.noise_std' must be >= 0"),
    ("zero-learning-rate", None, ["train.base_lr=0"], r"'train\.base_lr' must be > 0"),
    ("val-fraction-one", None, ["data.val_fraction=1.0"], r"'data\.val_fraction' must be <= 0\.9"),
    ("partition-eleven", None, ["data.partition=11"], r"'data\.partition' must be <= 10"),
    ("unknown-method", None, ["prompt.method=prefix_tuning"], r"'prompt\.method' must be one of .*got 'prefix_tuning'"),
    ("unknown-optimizer", None, ["train.optimizer=adam"], r"'train\.optimizer' must be one of sgd, adamw"),
    ("init-range-reversed", None, ["spike.init_low=1", "spike.init_high=0"], r"init_high must be >= init_low"),
    ("mean-std-lengths", None, ["data.mean=[0.5]", "data.std=[0.5,0.5]"], r"same length"),
    ("python-tag", "seed: !!python/object/apply:os.getpid []\n", [], r"Python object tags are refused"),
    ("not-a-mapping", "just a string\n", [], r"expected a mapping of config keys"),
    ("syntax-error", "train: [1, 2\n", [], r"not valid safe YAML"),
    ("base-not-a-path", "_base_: {a: 1}\n", [], r"_base_ must be a path or a list of paths"),
    ("base-missing", "_base_: gone.yaml\n", [], r"config file not found: .*gone\.yaml"),
]


@pytest.mark.parametrize("row_id, text, overrides, pattern", CONFIG_ROWS, ids=[r[0] for r in CONFIG_ROWS])
def test_load_config_bad_input(tmp_path, row_id, text, overrides, pattern):
    path = None
    if text is not None:
        path = tmp_path / "bad.yaml"
        path.write_text(text)
    with pytest.raises(NVPTError, match=pattern):
        load_config(path, overrides)


def test_load_config_missing_file(tmp_path):
    with pytest.raises(NVPTError, match=r"config file not found: .*absent\.yaml"):
        load_config(tmp_path / "absent.yaml")


@pytest.mark.parametrize("text", ["1e-3", "2E-4", "1e30", "5e+2"])
def test_scientific_notation_is_a_number_not_a_string(tmp_path, text):
    """`train.base_lr=1e-3` is how people write learning rates; PyYAML (YAML 1.1) reads it as a
    string, and load_config then refuses a perfectly good value."""
    expected = float(text)
    assert load_config(None, [f"train.base_lr={text}"]).train.base_lr == expected
    path = tmp_path / "lr.yaml"
    path.write_text(f"train:\n  base_lr: {text}\n  min_lr: {text}\n")
    cfg = load_config(path)
    assert (cfg.train.base_lr, cfg.train.min_lr) == (expected, expected)


# --------------------------------------------------------------------------- build_model

MODEL_ROWS = [
    # (row id, overrides ({name} = paths[name]), regex the NVPTError must match)
    ("num-classes-null", ["model.num_classes=null"], r"'model\.num_classes' is null"),
    ("unknown-timm-model", ["model.name=vit_nano_patch99"], r"unknown timm model 'vit_nano_patch99'"),
    ("unknown-pretrained-tag", ["model.name=vit_tiny_patch16_224.no_such_tag", "model.pretrained=true"],
     r"vit_tiny_patch16_224\.no_such_tag"),
    ("not-a-vit", ["model.name=resnet18", "model.kwargs=null", "model.img_size=null"], r"is a ResNet, not a timm VisionTransformer"),
    ("heads-do-not-divide", ["model.kwargs={patch_size: 8, depth: 2, embed_dim: 48, num_heads: 5}"],
     r"timm cannot build .*divisible by num_heads"),
    ("unknown-timm-argument", ["model.kwargs={bogus_arg: 1}"],
     r"timm cannot build 'vit_tiny_patch16_224' .*unexpected keyword argument 'bogus_arg'"),
    ("kwargs-not-a-mapping", ["model.kwargs=7"], r"'model\.kwargs' must be a YAML mapping"),
    # the patterns name the problem: every "timm cannot build" error repeats the kwargs dict, keys included
    ("kwargs-broken-yaml", ["model.kwargs={embed_dim: 48"], r"'model\.kwargs' is not valid safe YAML \(while parsing"),
    ("kwargs-python-tag", ["model.kwargs=!!python/object/apply:os.getpid []"],
     r"'model\.kwargs' is not valid safe YAML \(could not determine a constructor"),
    ("negative-embed-dim", ["model.kwargs={patch_size: 8, depth: 2, embed_dim: -48, num_heads: 3}"],
     r"model\.kwargs embed_dim=-48 must be a positive integer"),
    ("zero-patch-size", ["model.kwargs={patch_size: 0, depth: 2, embed_dim: 48, num_heads: 3}"],
     r"model\.kwargs patch_size=0 must be a positive integer"),
    ("zero-patch-height", ["model.kwargs={patch_size: [0, 8], depth: 2, embed_dim: 48, num_heads: 3}"],
     r"model\.kwargs patch_size=\[0, 8\] must be a positive integer"),
    ("zero-heads", ["model.kwargs={patch_size: 8, depth: 2, embed_dim: 48, num_heads: 0}"],
     r"model\.kwargs num_heads=0 must be a positive integer"),
    ("zero-depth", ["model.kwargs={patch_size: 8, depth: 0, embed_dim: 48, num_heads: 3}"],
     r"model\.kwargs depth=0 must be a positive integer"),
    ("negative-depth", ["model.kwargs={patch_size: 8, depth: -1, embed_dim: 48, num_heads: 3}"],
     r"model\.kwargs depth=-1 must be a positive integer"),
    ("image-smaller-than-patch", ["model.img_size=4"], r"model\.img_size=4 is smaller than the 8 px patch"),
    ("missing-pretrained-file", ["model.pretrained_file={tmp}/absent.safetensors"], r"weights file not found: .*absent"),
    ("garbage-safetensors", ["model.pretrained_file={garbage}"], r"cannot read weights file .*garbage\.safetensors"),
    ("garbage-pth", ["model.pretrained_file={garbage_pth}"], r"cannot read weights file .*garbage\.pth"),
    ("hub-unreachable", ["model.pretrained=true"], r"could not fetch pretrained weights for 'vit_tiny_patch16_224'"),
]


@pytest.mark.parametrize("row_id, overrides, pattern", MODEL_ROWS, ids=[r[0] for r in MODEL_ROWS])
def test_build_model_bad_input(paths, row_id, overrides, pattern):
    cfg = tiny_cfg(*(fill(o, paths) for o in overrides))
    with pytest.raises(NVPTError, match=pattern):
        build_model(cfg)


# --------------------------------------------------------------------------- build_datasets

DATA_ROWS = [
    # (row id, overrides ({name} = paths[name]), regex the NVPTError must match); the datasets are
    # built and every item of every split is read, so lazily decoded files count too
    ("textures-crop-too-large", ["data.name=textures", "data.crop_size=5000"], r"data\.crop_size=5000 does not fit"),
    ("image-folder-missing", ["data.name=image_folder", "data.root={nodata}"], r"image_folder: .*nodata/train not found"),
    ("image-folder-no-classes", ["data.name=image_folder", "data.root={no_classes}"], r"no_classes/train has no class sub-folders"),
    ("image-folder-empty-class", ["data.name=image_folder", "data.root={empty_class}"], r"train/b holds no images"),
    ("image-folder-class-mismatch", ["data.name=image_folder", "data.root={class_mismatch}"], r"they differ in: b, c"),
    ("corrupt-jpg", ["data.name=image_folder", "data.root={corrupt_images}"], r"cannot read image .*bad\.jpg"),
    ("truncated-png", ["data.name=image_folder", "data.root={truncated_images}"], r"cannot read image .*cut\.png"),
    ("dtd-missing", ["data.name=dtd", "data.root={nodata}"], r"dtd: dataset not found"),
    ("vtab-missing", ["data.name=vtab", "data.task=t", "data.root={nodata}"], r"vtab: task folder .*nodata/t not found"),
    ("vtab-empty-list", ["data.name=vtab", "data.task=task", "data.root={vtab}"], r"train800val200\.txt is empty"),
    ("fashion-mnist-missing", ["data.name=fashion_mnist", "data.root={nodata}"], r"fashion_mnist: .* not found"),
    ("mean-wrong-length", ["data.name=image_folder", "data.root={good_images}", "data.mean=[0.5,0.5]", "data.std=[0.5,0.5]"],
     r"data\.mean has 2 values but the model takes 3 channels"),
]


@pytest.mark.parametrize("row_id, overrides, pattern", DATA_ROWS, ids=[r[0] for r in DATA_ROWS])
def test_build_datasets_bad_input(paths, row_id, overrides, pattern):
    cfg = tiny_cfg("data.val_fraction=0.0", *(fill(o, paths) for o in overrides))
    with pytest.raises(NVPTError, match=pattern):
        bundle = build_datasets(cfg, 32, 3, (0.5,) * 3, (0.5,) * 3)
        for split in (bundle.train, bundle.val, bundle.test):
            for index in range(len(split) if split is not None else 0):
                split[index]


def test_build_datasets_two_channel_model(paths):
    cfg = tiny_cfg("data.name=image_folder", f"data.root={paths['good_images']}")
    with pytest.raises(NVPTError, match=r"model\.in_chans=2 is not supported by the data pipeline"):
        build_datasets(cfg, 32, 2, (0.5,) * 2, (0.5,) * 2)
