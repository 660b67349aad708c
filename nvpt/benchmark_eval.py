"""Speed of the evaluation pipeline and the input pipeline on the machine it runs on (`make benchmark-eval`,
tools/benchmark.py --eval), against the code of commit BASELINE (before issue 19) in the same process.

    result = eval_benchmark(EvalBenchArgs(), torch.device("cpu"))
    print(eval_report(result))

What it measures, with random-weight models (speed does not depend on the weights):
- per evaluation set (clean + every default set of configs/base.yaml, the sets `make paper` uses): images/s of
  corrupting a batch and classifying it, for the demo ViT (its own 32 px) and ViT-B/16 (224 px), the
  corruption timed with today's code and with BASELINE's interleaved round by round (rotated order), the
  forward pass once per model (it costs the same on any set's images). The 224-px inputs are real-size JPEGs
  (500 x 375, photograph-like: smooth colour fields, edges and grain) decoded and resized as the data sets do.
- the loader: images/s of one process decoding those JPEGs and resizing them to 224 px (today's data
  pipeline and BASELINE's), and of the decode-once cache (`cached_dataset`) where the package has one.
- checkpoint I/O: MB/s of an atomic write (write, fsync, rename) of a checkpoint-sized file.
The figures go to a JSON (default docs/performance/benchmark_eval.json) that nvpt.cost reads for its estimate.
"""
from __future__ import annotations

import datetime
import importlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from nvpt.benchmark import Timer, device_name, interleaved
from nvpt.config import load_config
from nvpt.engine.checkpoint import atomic_write
from nvpt.errors import NVPTError
from nvpt.models import build_model
from nvpt.robustness.corruptions import corrupt, resolve_table
from nvpt.robustness.evaluate import robustness_sets
from nvpt.robustness.report import set_key

ROOT = Path(__file__).resolve().parent.parent
BASELINE = "5fb576b"  # the code before issue 19: corruptions on the CPU image by image, decoding every epoch
DEFAULT_OUT = ROOT / "docs" / "performance" / "benchmark_eval.json"
MODELS = {"demo ViT": (ROOT / "configs/demo/spike_nvpt.yaml", []),
          "ViT-B/16": (ROOT / "configs/dtd.yaml", [])}
MIN_REPEAT_S = 0.05  # a corruption's timed repeat makes enough calls to last this long
JPEG_SIZE = (500, 375)  # a typical photograph in DTD / Pets / Caltech-101 (width, height)


@dataclass
class EvalBenchArgs:
    corrupt_images: int = 16  # images per set for the corruption timing (224 px; the demo ViT at its own size)
    forward_images: int = 4  # images per forward pass of ViT-B/16 (the demo ViT gets 8x as many)
    loader_images: int = 16  # JPEGs decoded per loader timing
    repeats: int = 3
    io_mb: int = 32
    models: tuple = tuple(MODELS)
    baseline: bool = True  # also time BASELINE's code (needs git and the repository's history)
    sets: str = "paper"  # paper: configs/base.yaml's sets; all: the 19 corruptions x 5 severities + those sigmas

    def check(self) -> None:
        if min(self.corrupt_images, self.forward_images, self.loader_images, self.repeats, self.io_mb) < 1:
            raise NVPTError("--eval-images, --forward-images, --loader-images, --repeats and --io-mb must be >= 1")
        if self.sets not in ("paper", "all"):
            raise NVPTError(f"--eval-sets must be paper or all, got {self.sets!r}")
        unknown = [m for m in self.models if m not in MODELS]
        if unknown:
            raise NVPTError(f"unknown model {unknown[0]!r}; use {', '.join(MODELS)}")


# -- the baseline's code, imported under another name ------------------------------------------------------
def baseline_package(commit: str = BASELINE, root: Path = ROOT) -> tuple[object | None, str]:
    """BASELINE's nvpt package extracted from git into a temporary folder and imported as nvpt_<commit>
    (its own imports rewritten), or (None, why not)."""
    name = f"nvpt_{commit}"
    if name in sys.modules:
        return sys.modules[name], "ok"
    target = Path(tempfile.mkdtemp(prefix="nvpt-baseline-"))
    try:
        archive = subprocess.run(["git", "-C", str(root), "archive", commit, "--", "nvpt",
                                  ":(exclude)nvpt/assets/*.safetensors"], capture_output=True, check=True,
                                 timeout=120).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        shutil.rmtree(target, ignore_errors=True)
        return None, f"git archive {commit} failed ({type(exc).__name__}): not a git checkout with that commit"
    import atexit
    import tarfile

    atexit.register(shutil.rmtree, target, True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")
    (target / "nvpt").rename(target / name)
    pattern = re.compile(r"\bnvpt(?=\.[a-z_])|(?<=from )nvpt(?= import)|(?<=import )nvpt\b")
    for path in (target / name).rglob("*.py"):
        path.write_text(pattern.sub(name, path.read_text()))
    sys.path.insert(0, str(target))
    try:
        module = importlib.import_module(name)
    finally:
        sys.path.remove(str(target))
    return module, "ok"


def _baseline_module(package, sub: str):
    return importlib.import_module(f"{package.__name__}.{sub}") if package is not None else None


# -- inputs --------------------------------------------------------------------------------------------------
def photo_like_jpegs(folder: Path, count: int, size: tuple[int, int] = JPEG_SIZE, seed: int = 0) -> list[Path]:
    """`count` JPEGs of `size` (quality 90) that compress like photographs: smooth colour fields, a few hard
    edges and sensor grain (a flat or random-noise image would decode faster or slower than real data)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    w, h = size
    paths = []
    for i in range(count):
        base = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize((w, h), Image.BICUBIC)
        detail = Image.fromarray(rng.integers(0, 256, (h // 8, w // 8, 3), dtype=np.uint8)).resize((w, h), Image.BILINEAR)
        img = 0.75 * np.asarray(base, np.float32) + 0.25 * np.asarray(detail, np.float32)
        yy, xx = np.mgrid[:h, :w]
        for _ in range(3):  # hard edges: half-planes of another shade
            a, b, c = rng.normal(size=3)
            img[(a * xx + b * yy + c * 100) > 0] *= rng.uniform(0.6, 1.2)
        img += rng.normal(0, 6, img.shape)
        path = folder / f"photo_{i:04d}.jpg"
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path, quality=90)
        paths.append(path)
    return paths


def decode_dataset(data_package, paths: list[Path], img_size: int):
    """The data pipeline's (path, label) dataset with its evaluation transform (VTAB: resize to img_size)."""
    image_folder = importlib.import_module(f"{data_package}.image_folder")
    transforms = importlib.import_module(f"{data_package}.transforms")
    return image_folder.ImageList([(p, 0) for p in paths], transforms.build_transform("vtab", img_size, 3, False))


def cached_dataset(dataset, folder: Path):
    """The dataset decoded once into nvpt.data.cache's uint8 array (in memory), or None when it cannot be cached."""
    from nvpt.data.cache import cached_dataset as decode_once

    cfg = load_config(None, ["data.cache=memory", "data.num_workers=0", f"output_dir={folder}"])
    cached = decode_once(dataset, cfg)
    return cached if cached is not dataset else None


def _read_batches(dataset, batch: int = 64) -> None:
    """What the training and evaluation loops get from a cached set: whole batches of uint8 images (one read per
    batch, as make_loader feeds it), turned into ToTensor's floats."""
    from nvpt.data.cache import unit_float

    for start in range(0, len(dataset), batch):
        images, _ = dataset[list(range(start, min(start + batch, len(dataset))))]
        unit_float(images)


def _seconds(series, name: str, count: int) -> float:
    """Median seconds per item of one timed repeat: process CPU time on the CPU (a loaded machine's waits for a
    core are left out; equal to the wall time on an idle one), the wall clock on CUDA."""
    summary = series.summary(name, count)
    ms = summary["cpu_time_ms"] if summary["cpu_time_ms"] is not None else summary["time_ms"]["median"]
    return ms / 1000 / count


def _timed(fns: dict, repeats: int, timer, min_repeat_s: float):
    return interleaved(fns, repeats, 1, timer, min_repeat_s)[0]


def _read_all(dataset) -> None:
    for i in range(len(dataset)):
        dataset[i]


# -- the measurements ----------------------------------------------------------------------------------------
def time_loader(args: EvalBenchArgs, folder: Path, baseline, log) -> dict:
    paths = photo_like_jpegs(folder, args.loader_images)
    mean_kb = sum(p.stat().st_size for p in paths) / len(paths) / 1024
    timer = Timer(torch.device("cpu"))
    variants = {"uncached": decode_dataset("nvpt.data", paths, 224)}
    if baseline is not None:
        variants[f"uncached_{BASELINE}"] = decode_dataset(f"{baseline.__name__}.data", paths, 224)
    cached = cached_dataset(variants["uncached"], folder)
    fns = {name: (lambda d=d: _read_all(d)) for name, d in variants.items()}
    if cached is not None:
        fns["cached"] = lambda: _read_batches(cached)
    log(f"loader: {args.loader_images} JPEGs of {JPEG_SIZE[0]}x{JPEG_SIZE[1]} ({mean_kb:.0f} kB each) -> 224 px, "
        f"{', '.join(fns)}")
    series = _timed(fns, args.repeats, timer, 0.0)
    out = {"jpeg_size": list(JPEG_SIZE), "jpeg_kb": round(mean_kb, 1), "images": args.loader_images, "workers": 0}
    for name in fns:
        out[f"{name}_images_per_s"] = 1 / _seconds(series, name, args.loader_images)
    out.setdefault("cached_images_per_s", None)
    if cached is None:
        out["cached_note"] = "no decode-once cache in this package yet (cached_dataset returns None)"
    return out, paths


def _inputs(paths: list[Path], count: int, img_size: int) -> torch.Tensor:
    """`count` [0,1] images at img_size decoded from the JPEGs (repeated when there are fewer)."""
    dataset = decode_dataset("nvpt.data", paths, img_size)
    return torch.stack([dataset[i % len(dataset)][0] for i in range(count)])


def time_model_sets(label: str, args: EvalBenchArgs, paths: list[Path], baseline, device: torch.device, log) -> dict:
    config, overrides = MODELS[label]
    cfg = load_config(config, ["model.pretrained=false", "model.pretrained_file=null", "model.num_classes=10"]
                      + overrides)
    img_size = cfg.model.img_size or 224
    paper = load_config(ROOT / "configs/base.yaml")  # the sets `make paper` evaluates
    if args.sets == "all":
        paper.eval["corruptions"] = ["all"]
    sets = robustness_sets(paper.eval)
    table = resolve_table("auto", img_size)
    torch.manual_seed(0)
    model = build_model(cfg).to(device).eval().deploy()
    mean = torch.full((1, 3, 1, 1), 0.5, device=device)
    forward_n = args.forward_images * (8 if img_size < 64 else 1)
    corrupt_n = args.corrupt_images * (4 if img_size < 64 else 1)
    batch = _inputs(paths, max(corrupt_n, forward_n), img_size).to(device)
    ids = torch.arange(corrupt_n)
    old = _baseline_module(baseline, "robustness.corruptions")
    timer = Timer(device)
    amp = device.type == "cuda"

    @torch.no_grad()
    def forward():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            model((batch[:forward_n] - mean) / mean).argmax(1)

    forward_s = _seconds(_timed({"forward": forward}, args.repeats, timer, 0.0), "forward", forward_n)  # per image
    log(f"{label} ({img_size} px, table {table}): forward {1 / forward_s:.1f} images/s; corrupting {corrupt_n} "
        f"images per set, {len(sets)} sets" + (f", today's code vs {BASELINE}'s" if old else ""))
    rows = {"clean": {"corrupt_images_per_s": None, "pipeline_images_per_s": 1 / forward_s}}
    images = batch[:corrupt_n]
    for name, severity, sigma in sets:
        fns = {"new": lambda: corrupt(images, name, severity, ids, 0, table=table, sigma=sigma)}
        if old is not None:
            fns["old"] = lambda: old.corrupt(images.cpu(), name, severity, ids, 0, table=table, sigma=sigma)
        series = _timed(fns, args.repeats, timer, MIN_REPEAT_S)
        per = {k: _seconds(series, k, corrupt_n) for k in fns}
        row = {"corrupt_images_per_s": 1 / per["new"], "pipeline_images_per_s": 1 / (per["new"] + forward_s)}
        if "old" in per:
            row.update({f"corrupt_images_per_s_{BASELINE}": 1 / per["old"],
                        f"pipeline_images_per_s_{BASELINE}": 1 / (per["old"] + forward_s),
                        "pipeline_ratio": (per["old"] + forward_s) / (per["new"] + forward_s),
                        "corrupt_ratio": per["old"] / per["new"]})
        rows[set_key(name, severity, sigma)] = row
    noisy = [r for k, r in rows.items() if k != "clean"]
    return {"config": str(Path(config).relative_to(ROOT)), "img_size": img_size, "table": table,
            "forward_images": forward_n, "corrupt_images": corrupt_n, "forward_images_per_s": 1 / forward_s,
            "corrupt_ms_mean": 1000 * sum(1 / r["corrupt_images_per_s"] for r in noisy) / len(noisy),
            "sets": rows}


def time_io(args: EvalBenchArgs, folder: Path) -> dict:
    payload = os.urandom(args.io_mb * 2**20)
    seconds = []
    for i in range(args.repeats):
        start = time.perf_counter()
        atomic_write(folder / "checkpoint-io-probe.bin", lambda tmp: tmp.write_bytes(payload))
        seconds.append(time.perf_counter() - start)
    (folder / "checkpoint-io-probe.bin").unlink()
    return {"mb": args.io_mb, "write_mb_per_s": args.io_mb / sorted(seconds)[len(seconds) // 2],
            "how": "atomic_write (write, fsync, rename) of random bytes into a temporary folder, median"}


def git_commit() -> str | None:
    try:
        return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def eval_benchmark(args: EvalBenchArgs, device: torch.device, log=print, workdir: Path | None = None) -> dict:
    args.check()
    baseline, why = baseline_package() if args.baseline else (None, "not asked (--no-baseline)")
    if baseline is None:
        log(f"baseline {BASELINE}: not timed: {why}")
    folder = Path(tempfile.mkdtemp(prefix="nvpt-bench-eval-", dir=workdir))
    try:
        loader, paths = time_loader(args, folder / "jpeg", baseline, log)
        models = {label: time_model_sets(label, args, paths, baseline, device, log) for label in args.models}
        io_figures = time_io(args, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {"what": "nvpt.benchmark_eval", "date": datetime.date.today().isoformat(), "commit": git_commit(),
            "baseline": BASELINE if baseline is not None else None, "device": str(device),
            "device_name": device_name(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(), "load_avg": list(os.getloadavg()), "args": vars(args) | {"models": list(args.models)},
            "loader": loader, "eval": models, "io": io_figures}


def eval_report(result: dict) -> str:
    base = result["baseline"]
    lines = [f"evaluation pipeline on {result['device']} ({result['device_name']}), torch {result['torch']}, "
             f"{result['threads']} thread(s), load avg {result['load_avg'][0]:.2f}, commit {result['commit']}"
             + (f", against {base}" if base else "")]
    ld = result["loader"]
    cached = f"{ld['cached_images_per_s']:.1f}" if ld["cached_images_per_s"] else "n/a (no cache)"
    old = f", {base}: {ld[f'uncached_{base}_images_per_s']:.1f}" if base else ""
    lines.append(f"loader, one process, {ld['jpeg_size'][0]}x{ld['jpeg_size'][1]} JPEG -> 224 px: uncached "
                 f"{ld['uncached_images_per_s']:.1f} images/s{old}; cached {cached}")
    for label, m in result["eval"].items():
        lines.append(f"{label} ({m['img_size']} px, table {m['table']}): forward {m['forward_images_per_s']:.1f} images/s; "
                     f"per set, images/s of corrupt + forward" + (f" (today / {base}, ratio)" if base else ""))
        for key, row in m["sets"].items():
            text = f"  {key:22s} {row['pipeline_images_per_s']:9.1f}"
            if base and key != "clean":
                text += f" {row[f'pipeline_images_per_s_{base}']:9.1f} x{row['pipeline_ratio']:.2f}" \
                        f"  (corruption alone {row['corrupt_images_per_s']:.0f} / {row[f'corrupt_images_per_s_{base}']:.0f}" \
                        f" images/s, x{row['corrupt_ratio']:.2f})"
            lines.append(text)
    lines.append(f"checkpoint I/O: {result['io']['write_mb_per_s']:.0f} MB/s ({result['io']['how']})")
    return "\n".join(lines)


# -- tools/gpu_check.sh's figures --------------------------------------------------------------------------
def gpu_figures(out: Path) -> tuple[dict, str]:
    """gpu_check.json (what nvpt.cost reads: the measured MFU and corruption cost) and a markdown fragment for
    docs/performance.md, from the JSONs gpu_check.sh leaves in `out` (benchmark-dtd-cuda.json, eval-cuda.json);
    a missing one leaves its figures out."""
    from nvpt.cost import forward_flops

    out = Path(out)
    figures: dict = {"what": "tools/gpu_check.sh", "date": datetime.date.today().isoformat(), "commit": git_commit()}
    lines = ["| measured by tools/gpu_check.sh | value |", "| --- | ---: |"]
    bench = out / "benchmark-dtd-cuda.json"
    if bench.is_file():
        b = json.loads(bench.read_text())
        figures["device_name"] = b["device_name"]
        vpt = b["training"].get("vpt_deep") or next(iter(b["training"].values()))
        train_ips = vpt["images_per_s"]
        infer_ips = b["inference"]["spike_nvpt_deployed"]["images_per_s"]
        flops = forward_flops(load_config(ROOT / "configs/dtd.yaml"))
        peak = 989e12
        figures.update(train_images_per_s=train_ips, eval_images_per_s=infer_ips,
                       mfu=round(train_ips * 2 * flops / peak, 4), mfu_eval=round(infer_ips * flops / peak, 4))
        lines += [f"| ViT-B/16 224 px bf16, batch {b['batch_size']}: VPT-deep training | {train_ips:,.0f} images/s |",
                  f"| ViT-B/16 224 px bf16: deployed Spike-NVPT inference | {infer_ips:,.0f} images/s |",
                  f"| share of the 989 TFLOP/s peak: training / inference | {figures['mfu']:.0%} / "
                  f"{figures['mfu_eval']:.0%} |"]
        lines += [f"| {'PASS' if c['pass'] else 'FAIL'}: {c['what']} | {c['ratio']:.3f} (<= {c['target']:.3f}) |"
                  for c in b["checks"]]
    ev = out / "eval-cuda.json"
    if ev.is_file():
        e = json.loads(ev.read_text())
        figures.setdefault("device_name", e["device_name"])
        vit = e["eval"].get("ViT-B/16")
        if vit:
            noisy = {k: r for k, r in vit["sets"].items() if k != "clean"}
            device_sets = [r for k, r in noisy.items() if not k.startswith("jpeg_compression")]
            figures["corrupt_ms_per_image"] = sum(1000 / r["corrupt_images_per_s"] for r in device_sets) / len(device_sets)
            figures["corrupt_images_per_s"] = {k: r["corrupt_images_per_s"] for k, r in noisy.items()}
            slowest = min(noisy, key=lambda k: noisy[k]["corrupt_images_per_s"])
            lines += [f"| corruption on the GPU, 224 px from {e['loader']['jpeg_size'][0]}x{e['loader']['jpeg_size'][1]} "
                      f"JPEGs, mean over {len(device_sets)} sets | {figures['corrupt_ms_per_image']:.4f} ms per image |",
                      f"| slowest set: {slowest} | {noisy[slowest]['corrupt_images_per_s']:,.0f} images/s |",
                      f"| evaluation pipeline (corrupt + forward), mean over the sets | "
                      f"{sum(r['pipeline_images_per_s'] for r in noisy.values()) / len(noisy):,.0f} images/s |"]
        loader = e["loader"]
        cached = loader.get("cached_images_per_s")
        lines.append(f"| loader, one process: uncached / cached | {loader['uncached_images_per_s']:,.0f} / "
                     f"{f'{cached:,.0f}' if cached else 'n/a'} images/s |")
    fragment = f"Measured on {figures.get('device_name', '?')} on {figures['date']} (commit {figures['commit']}):\n\n" \
        + "\n".join(lines) + "\n"
    return figures, fragment


def eval_markdown(result: dict) -> str:
    """docs/performance.md's tables of a benchmark_eval result: per set, images/s today and at the baseline, and
    their ratio; the loader; the checkpoint writes."""
    base = result["baseline"]
    lines = [f"Measured on {result['device_name']} ({result['device']}, {result['threads']} thread(s), load average "
             f"{result['load_avg'][0]:.1f}) on {result['date']}, commit {result['commit']}"
             + (f", against commit {base} in the same process, interleaved" if base else "") + ".", ""]
    ld = result["loader"]
    cached = ld.get("cached_images_per_s")
    lines += ["| loader, one process, 500x375 JPEG -> 224 px | images/s | ratio to " + (base or "-") + " |",
              "| --- | ---: | ---: |"]
    old = ld.get(f"uncached_{base}_images_per_s") if base else None
    lines.append(f"| uncached (decode + resize) | {ld['uncached_images_per_s']:.0f} | "
                 + (f"{ld['uncached_images_per_s'] / old:.2f}" if old else "n/a") + " |")
    lines.append("| cached (decode once) | " + (f"{cached:.0f} | {cached / old:.2f}" if cached and old else
                                               f"{cached:.0f} | n/a" if cached else "n/a (no cache) | n/a") + " |")
    lines += ["", "| model | noisy sets | corruption ms per image, mean over the sets | at " + (base or "-")
              + " | ratio | corrupt + forward images/s, mean | at " + (base or "-") + " | ratio |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for label, m in result["eval"].items():
        noisy = [r for k, r in m["sets"].items() if k != "clean"]
        new_ms = sum(1000 / r["corrupt_images_per_s"] for r in noisy) / len(noisy)
        new_ips = sum(r["pipeline_images_per_s"] for r in noisy) / len(noisy)
        if base:
            old_ms = sum(1000 / r[f"corrupt_images_per_s_{base}"] for r in noisy) / len(noisy)
            old_ips = sum(r[f"pipeline_images_per_s_{base}"] for r in noisy) / len(noisy)
            lines.append(f"| {label} ({m['img_size']} px) | {len(noisy)} | {new_ms:.3f} | {old_ms:.3f} | "
                         f"{old_ms / new_ms:.2f} | {new_ips:.1f} | {old_ips:.1f} | {new_ips / old_ips:.2f} |")
        else:
            lines.append(f"| {label} ({m['img_size']} px) | {len(noisy)} | {new_ms:.3f} | | | {new_ips:.1f} | | |")
    for label, m in result["eval"].items():
        lines += ["", f"{label} ({m['img_size']} px, table {m['table']}, forward {m['forward_images_per_s']:.1f} "
                  f"images/s): images/s of corrupt + forward per set, and of the corruption alone", "",
                  "| set | pipeline | pipeline " + (base or "") + " | ratio | corruption | corruption "
                  + (base or "") + " | ratio |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for key, row in m["sets"].items():
            if key == "clean":
                lines.append(f"| clean | {row['pipeline_images_per_s']:.1f} | | | | | |")
            elif base:
                lines.append(f"| {key} | {row['pipeline_images_per_s']:.1f} | {row[f'pipeline_images_per_s_{base}']:.1f}"
                             f" | {row['pipeline_ratio']:.2f} | {row['corrupt_images_per_s']:.0f} | "
                             f"{row[f'corrupt_images_per_s_{base}']:.0f} | {row['corrupt_ratio']:.2f} |")
            else:
                lines.append(f"| {key} | {row['pipeline_images_per_s']:.1f} | | | {row['corrupt_images_per_s']:.0f} | | |")
    lines += ["", f"Checkpoint writes (write, fsync, rename of {result['io']['mb']} MB): "
              f"{result['io']['write_mb_per_s']:.0f} MB/s."]
    return "\n".join(lines) + "\n"
