"""What tools read and write, checked before their work starts (issue 24).

No tool writes over a file of a run that another tool reads (its checkpoints, config.yaml, metrics.jsonl,
results.json) or over one of its own inputs; every JSON a tool reads is checked against the shape it uses,
in one line naming the file, the key and the fix; every image of every split is verified while the data
sets are built, before a run folder exists; output folders are checked for writability before any
training or evaluation; numeric flags refuse NaN and inf. Tools run as processes through the fork server
of test_reliability.
"""
from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest
from PIL import Image

from conftest import tiny_cfg
from nvpt.config import dump_config
from nvpt.data.image_folder import verify_image
from nvpt.errors import NVPTError
from nvpt.outputs import RUN_FILES
from test_bad_input import BASE, assert_one_line_error, fill, image_folder, write_png
from test_bad_input import server  # noqa: F401  (the module's fork server fixture)


@pytest.fixture(scope="module")
def compared(server, tmp_path_factory) -> Path:
    """tools/compare.py of spike_nvpt and vpt_deep, one seed each: root/runs/tiny-<method>-s0, root/cmp/comparison.json."""
    root = tmp_path_factory.mktemp("compared")
    dump_config(tiny_cfg(*BASE, f"output_dir={root / 'runs'}"), root / "tiny.yaml")
    done = server.run("compare.py", root / "tiny.yaml", "--methods", "spike_nvpt", "vpt_deep", "--seeds", "1",
                      "--out", root / "cmp")
    assert done.rc == 0, done.stderr[-3000:]
    return root


def copy_of(compared: Path, tmp_path: Path) -> dict[str, str]:
    """A private copy of the compared folder (a test that fails must not damage the others' runs) and its paths."""
    root = Path(shutil.copytree(compared, tmp_path / "c"))
    (root / "tiny.yaml").write_text((root / "tiny.yaml").read_text().replace(str(compared), str(root)))
    return {"root": str(root), "cfg": str(root / "tiny.yaml"), "spike": str(root / "runs" / "tiny-spike_nvpt-s0"),
            "vpt": str(root / "runs" / "tiny-vpt_deep-s0"), "cmp": str(root / "cmp")}


def fingerprints(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def unwritable_folder(tmp_path: Path) -> Path:
    """A folder path no file can be written under: a read-only folder; as root (who ignores permissions),
    /sys, a read-only file system."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        (folder / "probe").touch()
    except PermissionError:
        return folder / "out"
    (folder / "probe").unlink()
    return Path("/sys/nvpt-test-out")


# --------------------------------------------------------------------------- 1. a run's files are never overwritten

@pytest.mark.parametrize("tool, args", [
    ("export_prompts.py", ["{spike}", "--out", "{spike}/checkpoint-best.safetensors"]),
    ("export_prompts.py", ["{spike}/checkpoint-last.safetensors", "--out", "{spike}/checkpoint-last.safetensors"]),
    ("export_prompts.py", ["{spike}", "--out", "{spike}/results.json"]),
    ("export_prompts.py", ["{spike}", "--out", "{spike}/config.yaml"]),
    ("export_prompts.py", ["{spike}", "--out", "{spike}/metrics.jsonl"]),
    ("export_backbone.py", ["{vpt}", "{vpt}/checkpoint-best.safetensors"]),
    ("sweep_table.py", ["{cmp}/comparison.json", "--out", "{vpt}/results.json"]),
    ("sweep_table.py", ["{cmp}/comparison.json", "--out", "{cmp}/comparison.json"]),
], ids=["export-prompts-best", "export-prompts-last", "export-prompts-results", "export-prompts-config",
        "export-prompts-metrics", "export-backbone-best", "sweep-table-results", "sweep-table-its-input"])
def test_no_tool_writes_over_a_run_file(server, compared, tmp_path, tool, args):
    paths = copy_of(compared, tmp_path)
    folders = [Path(paths[k]) for k in ("spike", "vpt", "cmp")]
    before = [fingerprints(f) for f in folders]
    done = server.run(tool, *(fill(a, paths) for a in args))
    assert_one_line_error(done, r"would overwrite (checkpoint-best\.safetensors|checkpoint-last\.safetensors|results\.json|config\.yaml|"
                                r"metrics\.jsonl) of the run in|is also an input of this command")
    assert [fingerprints(f) for f in folders] == before  # nothing written, nothing left behind
    assert set(RUN_FILES) <= set(before[0])


def test_export_beside_the_run_still_works(server, compared, tmp_path):
    paths = copy_of(compared, tmp_path)
    done = server.run("export_prompts.py", paths["spike"])  # the default: RUN/prompts-packed.safetensors
    assert done.rc == 0, done.stderr[-2000:]
    assert (Path(paths["spike"]) / "prompts-packed.safetensors").is_file()


# --------------------------------------------------------------------------- 2, 5. JSON read by tools is checked

def damaged(path: Path, out: Path, change) -> str:
    data = json.loads(path.read_text())
    change(data)
    out.write_text(json.dumps(data))
    return str(out)


def _set(data: dict, keys: str, value) -> None:
    *head, last = keys.split("/")
    for key in head:
        data = data[key]
    data[last] = value


JSON_ROWS = [
    # (row id, file damaged: comparison | results, change, tool and its arguments ({json} = the damaged file), pattern)
    ("sweep-string-mean", "comparison", lambda d: _set(d, "accuracy/vpt_deep/clean/mean", "high"),
     ["sweep_table.py", "{json}"], r"bad\.json: accuracy\.vpt_deep\.clean\.mean must be a finite number, got 'high'; "
                                   r"pass the comparison\.json files tools/compare\.py writes"),
    ("sweep-null-mean", "comparison", lambda d: _set(d, "accuracy/spike_nvpt/mean_corrupted/mean", None),
     ["sweep_table.py", "{json}"], r"bad\.json: accuracy\.spike_nvpt\.mean_corrupted\.mean must be a finite number, got None"),
    ("sweep-methods-a-string", "comparison", lambda d: _set(d, "methods", "vpt_deep"),
     ["sweep_table.py", "{json}"], r"bad\.json: methods must be a non-empty list of method names, got 'vpt_deep'"),
    ("sweep-given-a-results-json", "results", lambda d: None,
     ["sweep_table.py", "{json}"], r"bad\.json is not a comparison\.json of tools/compare\.py .*looks like one run's results\.json"),
    ("reference-clean-a-word", "results", lambda d: _set(d, "clean", "high"),
     ["eval_robustness.py", "{spike}", "--reference", "{json}"],
     r"bad\.json: clean must be a top-1 accuracy in percent \(0\.\.100\), got 'high'; pass a results\.json"),
    ("reference-sets-plain-numbers", "results", lambda d: _set(d, "sets", {"gaussian@0.1": 50.0}),
     ["eval_robustness.py", "{spike}", "--reference", "{json}"], r"bad\.json: sets\.gaussian@0\.1 must be a JSON object"),
    ("reference-other-sets-without-their-means", "results",
     lambda d: (_set(d, "sets", {"gaussian@0.3": {**d["sets"]["gaussian@0.1"], "sigma": 0.3}}), _set(d, "corruptions", {})),
     ["eval_robustness.py", "{spike}", "--reference", "{json}"], r"bad\.json: corruptions\.gaussian must be a JSON object"),
    ("reference-bad-set-key", "results", lambda d: _set(d, "sets", {"o": {}}),
     ["eval_robustness.py", "{spike}", "--reference", "{json}"], r"bad\.json: sets: bad set key 'o'"),
    ("reference-nan", "results", lambda d: _set(d, "clean", float("nan")),
     ["eval_robustness.py", "{spike}", "--reference", "{json}"], r"cannot read .*bad\.json: NaN is not valid JSON"),
]


@pytest.mark.parametrize("row_id, which, change, args, pattern", JSON_ROWS, ids=[r[0] for r in JSON_ROWS])
def test_malformed_json_is_one_line_naming_file_key_and_fix(server, compared, tmp_path, row_id, which, change, args,
                                                            pattern):
    source = compared / ("cmp/comparison.json" if which == "comparison" else "runs/tiny-vpt_deep-s0/results.json")
    paths = {"json": damaged(source, tmp_path / "bad.json", change), "spike": str(compared / "runs/tiny-spike_nvpt-s0")}
    done = server.run(args[0], *(fill(a, paths) for a in args[1:]), "--out", tmp_path / "out")
    assert_one_line_error(done, pattern)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("change, pattern", [
    (lambda d: _set(d, "clean", "high"), r"clean must be a top-1 accuracy in percent \(0\.\.100\), got 'high'"),
    (lambda d: _set(d, "sets", {"o": d["sets"]["gaussian@0.1"]}), r"sets: bad set key 'o'"),
], ids=["clean-a-word", "bad-set-key"])
def test_compare_reusing_a_damaged_results_json_names_it_before_training(server, compared, tmp_path, change, pattern):
    paths = copy_of(compared, tmp_path)
    results = Path(paths["spike"]) / "results.json"
    damaged(results, results, change)
    done = server.run("compare.py", paths["cfg"], "--methods", "spike_nvpt", "vpt_deep", "linear", "--seeds", "1",
                      "--out", tmp_path / "cmp2")
    assert_one_line_error(done, rf"{re.escape(str(results))}: {pattern}.*; delete {re.escape(str(results))} and rerun: "
                                r"the run resumes")
    assert not (Path(paths["root"]) / "runs" / "tiny-linear-s0").exists()  # found before any training
    assert not (tmp_path / "cmp2").exists()


def test_a_damaged_results_json_deleted_is_evaluated_again(server, compared, tmp_path):
    """The fix the message gives works: without results.json the run resumes at its last epoch and is evaluated."""
    paths = copy_of(compared, tmp_path)
    kept = json.loads((Path(paths["spike"]) / "results.json").read_text())
    (Path(paths["spike"]) / "results.json").unlink()
    done = server.run("compare.py", paths["cfg"], "--methods", "spike_nvpt", "vpt_deep", "--seeds", "1",
                      "--out", tmp_path / "cmp2")
    assert done.rc == 0, done.stderr[-2000:]
    again = json.loads((Path(paths["spike"]) / "results.json").read_text())
    assert again["clean"] == kept["clean"] and again["sets"] == kept["sets"]


# --------------------------------------------------------------------------- 3. images verified up front

@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """Good PNG / JPEG files and three kinds of unreadable ones."""
    tmp = tmp_path_factory.mktemp("images")
    write_png(tmp / "good.png")
    Image.new("RGB", (40, 40), (10, 200, 30)).save(tmp / "good.jpg", quality=90)
    (tmp / "text.jpg").write_text("this is a text file, not a JPEG\n")
    whole = (tmp / "good.png").read_bytes()
    (tmp / "cut.png").write_bytes(whole[: len(whole) // 2])
    whole = (tmp / "good.jpg").read_bytes()
    (tmp / "cut.jpg").write_bytes(whole[: len(whole) // 2])  # PIL's verify() does not notice this one
    return tmp


def test_verify_image_finds_every_unreadable_kind(images):
    for name in ("good.png", "good.jpg"):
        verify_image(images / name)
    for name in ("text.jpg", "cut.png", "cut.jpg"):
        with pytest.raises(NVPTError, match=rf"cannot read image .*{name}"):
            verify_image(images / name)
    with pytest.raises(NVPTError, match=r"image file not found: .*gone\.png"):
        verify_image(images / "gone.png")


@pytest.mark.parametrize("split, name", [("train", "text.jpg"), ("test", "cut.png"), ("val", "cut.jpg")])
def test_unreadable_image_in_any_split_fails_before_a_run_folder(server, compared, images, tmp_path, split, name):
    root = image_folder(tmp_path / "data")
    if split == "val":
        for c, label in enumerate(("a", "b")):
            write_png(root / "val" / label / "0.png", (60 * c, 10, 10))
    shutil.copy(images / name, root / split / "b" / name)
    done = server.run("train.py", compared / "tiny.yaml", "data.name=image_folder", f"data.root={root}",
                      f"output_dir={tmp_path / 'runs'}", "run_name=x")
    assert_one_line_error(done, rf"cannot read image .*{split}/b/{name}")
    assert not (tmp_path / "runs").exists()


# --------------------------------------------------------------------------- 4. outputs checked before the work

@pytest.mark.parametrize("kind", ["read-only", "through-a-file"])
def test_unwritable_out_fails_before_any_training_or_evaluation(server, compared, tmp_path, kind):
    if kind == "read-only":
        out = unwritable_folder(tmp_path)
    else:
        (tmp_path / "a_file").write_text("x\n")
        out = tmp_path / "a_file" / "out"
    runs = tmp_path / "runs"
    done = server.run("compare.py", compared / "tiny.yaml", f"output_dir={runs}", "--methods", "vpt_deep", "linear",
                      "--seeds", "1", "--out", out)
    assert_one_line_error(done, r"--out .*out/comparison\.json: (cannot write in|.*a_file is a file)")
    assert not runs.exists()  # nothing trained
    done = server.run("eval_robustness.py", compared / "runs" / "tiny-spike_nvpt-s0", "--out", out)
    assert_one_line_error(done, r"--out .*out/robustness\.json: (cannot write in|.*a_file is a file)")
    assert "| clean |" not in done.stdout  # nothing evaluated


# --------------------------------------------------------------------------- 6, 7. finite flags, messages

@pytest.mark.parametrize("tool, args, pattern", [
    ("reproduce_paper.py", ["--estimate-only", "--jpeg-ms", "nan"], r"argument --jpeg-ms: must be a finite number, got 'nan'"),
    ("reproduce_paper.py", ["--estimate-only", "--jpeg-ms", "inf"], r"argument --jpeg-ms: must be a finite number, got 'inf'"),
    ("reproduce_paper.py", ["--estimate-only", "--mfu", "nan"], r"argument --mfu: must be a finite number"),
    ("reproduce_paper.py", ["--estimate-only", "--epoch-s", "inf"], r"argument --epoch-s: must be a finite number"),
    ("reproduce_paper.py", ["--estimate-only", "--peak-tflops=-inf"], r"argument --peak-tflops: must be a finite"),
    ("reproduce_paper.py", ["--estimate-only", "--array-ms", "NaN"], r"argument --array-ms: must be a finite number"),
    ("sweep_table.py", ["{cmp}/comparison.json", "--min-clean", "nan"], r"argument --min-clean: must be a finite number"),
    ("benchmark.py", ["{cfg}", "--min-repeat-s", "inf"], r"argument --min-repeat-s: must be a finite number"),
    ("eval_robustness.py", ["{spike}", "--gaussian-std", "0.1", "nan"], r"argument --gaussian-std: must be a finite"),
    ("sweep_table.py", ["{cmp}/comparison.json", "--min-clean", "x"], r"argument --min-clean: invalid float value: 'x'"),
], ids=["jpeg-ms-nan", "jpeg-ms-inf", "mfu-nan", "epoch-s-inf", "peak-tflops-minus-inf", "array-ms-nan",
        "min-clean-nan", "min-repeat-s-inf", "gaussian-std-nan", "min-clean-a-word"])
def test_numeric_flags_refuse_nan_and_inf(server, compared, tool, args, pattern):
    paths = {"cmp": str(compared / "cmp"), "cfg": str(compared / "tiny.yaml"),
             "spike": str(compared / "runs" / "tiny-spike_nvpt-s0")}
    assert_one_line_error(server.run(tool, *(fill(a, paths) for a in args)), pattern)


def test_no_rows_left_names_what_was_excluded(server, compared):
    done = server.run("sweep_table.py", compared / "cmp" / "comparison.json", "--exclude", "vpt_deep", "spike_nvpt")
    assert_one_line_error(done, r"no rows of any method left after --exclude vpt_deep spike_nvpt in the given files "
                                r"\(methods: spike_nvpt, vpt_deep\)")
    assert "None" not in done.stderr
    done = server.run("sweep_table.py", compared / "cmp" / "comparison.json", "--method", "linear")
    assert_one_line_error(done, r"no rows of method linear left in the given files")
