#!/usr/bin/env bash
# GPU checks on a lent CUDA machine (written for the H200 device; ~5-6 minutes after start-up, never more than 8:
# every stage's timeout is cut to what is left of an 8-minute budget, and a stage that no longer fits is skipped):
#   1. the CuPy vs torch SFL identity test      (pytest tests/test_spiking.py -k cupy; skipped without CUDA)
#   2. a spike_nvpt training smoke on CUDA      (tools/sfl_smoke.py: AMP bf16; the SFL ran in fp32 on the cupy backend auto chose)
#   3. configs/dtd.yaml end to end              (tools/train.py: random-weight ViT-B/16, bf16 autocast, spike.backend=cupy,
#                                                320 steps on 5,640 synthetic images in torchvision's DTD layout)
#   4. the benchmark on configs/dtd.yaml        (ViT-B/16 224 px, random weights, batch 64) and on the demo ViT
# Everything lands in $OUT: gpu_check.log, smoke.json, dtd_smoke.json and runs/ (the DTD run folder),
# benchmark-dtd-cuda.json, benchmark-demo-cuda.json.
#
# The device machine has no internet and its own python3 with torch, timm, CuPy, safetensors, pytest (see
# /work/.library/device/KINDS.md), but no SpikingJelly: carry its wheel. Once, in the repo root here:
#   echo /.whl/ >> .git/info/exclude
#   .venv/bin/pip download spikingjelly==0.0.0.0.14 --no-deps -d .whl      # pure-Python wheel, 0.4 MB
# then: device run(command="bash tools/gpu_check.sh", carry=[".whl"], timeout_s=480)
# Wheels of any other missing package can go into .whl too (NVPT_WHEELS=dir overrides the folder).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-/tmp/nvpt-gpu-out}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/gpu_check.log") 2>&1
START=$SECONDS
BUDGET=${NVPT_GPU_BUDGET_S:-480}  # the whole script, set-up included
stage() { echo; echo "=== [$((SECONDS - START)) s] $*"; }
left() { echo $((BUDGET - (SECONDS - START) - 5)); }
# seconds a stage may take: its own cap, cut to what is left of the budget (at least 1: timeout 0 would mean none)
allow() { local t; t=$(left); t=$((t < $1 ? t : $1)); echo $((t > 1 ? t : 1)); }
# whether at least $1 seconds are left for an optional stage
fits() { [ "$(left)" -ge "$1" ] || { echo "skipped: $((SECONDS - START)) s of the ${BUDGET} s budget used"; return 1; }; }
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 MPLBACKEND=Agg OMP_NUM_THREADS=4
trap 'echo "=== FAILED at line $LINENO after $((SECONDS - START)) s (see $OUT/gpu_check.log)"' ERR

stage "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv,noheader || echo "nvidia-smi unavailable"
BASE_PY=$(command -v python3)
"$BASE_PY" -c 'import sys, torch; print(sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())'

stage "python environment: a venv on top of the image's packages (its torch + CUDA stay; nothing is re-downloaded)"
VENV=/tmp/nvpt-gpu-venv
rm -rf "$VENV"
"$BASE_PY" -m venv --without-pip "$VENV"      # the image's python may lack ensurepip; pip comes from the image
SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
# python3 there may itself be a venv, whose packages --system-site-packages would not reach: a .pth does
"$BASE_PY" -c 'import site, sys; print("\n".join(p for p in site.getsitepackages() + [site.getusersitepackages()] if p))' > "$SITE/_image_packages.pth"
PY="$VENV/bin/python"
missing=$("$PY" - <<'EOF'
import importlib.util
wanted = {"torch": "torch", "timm": "timm", "spikingjelly": "spikingjelly==0.0.0.0.14", "cupy": "cupy-cuda13x==14.2.0",
          "safetensors": "safetensors", "yaml": "pyyaml", "tqdm": "tqdm", "matplotlib": "matplotlib", "pytest": "pytest"}
print(" ".join(pkg for mod, pkg in wanted.items() if importlib.util.find_spec(mod) is None))
EOF
)
echo "missing: ${missing:-none}"
if [ -n "$missing" ]; then
    WHEELS=${NVPT_WHEELS:-$ROOT/.whl}
    if compgen -G "$WHEELS/*.whl" > /dev/null; then
        timeout 120 "$PY" -m pip install -q --no-index --no-deps --no-cache-dir "$WHEELS"/*.whl
    else
        echo "no wheels in $WHEELS: trying the package index (the device machine usually has none)"
        # shellcheck disable=SC2086
        timeout 180 "$PY" -m pip install -q --retries 0 --timeout 10 $missing
    fi
fi
timeout 120 "$PY" -m pip install -q --no-deps --no-build-isolation --no-index -e "$ROOT" \
    || { echo "editable install failed: using PYTHONPATH"; export PYTHONPATH=$ROOT; }
"$PY" - <<'EOF'
import cupy, spikingjelly, timm, torch
assert torch.cuda.is_available(), "torch sees no GPU"
print("torch", torch.__version__, "| timm", timm.__version__, "| cupy", cupy.__version__, "| GPU", torch.cuda.get_device_name(0))
EOF

stage "1/4 CuPy vs torch Signal Filtering Layer (spikes identical, gradients close)"
timeout "$(allow 180)" "$PY" -m pytest -q -p no:cacheprovider tests/test_spiking.py -k cupy -rA | tee "$OUT/pytest_cupy.txt"
grep -q "PASSED tests/test_spiking.py::test_cupy_and_torch_backends_agree" "$OUT/pytest_cupy.txt" \
    || { echo "the CuPy identity test did not run and pass (skipped?)"; exit 1; }

stage "2/4 spike_nvpt training smoke on CUDA, AMP bf16"
SMOKE_DIR=$(mktemp -d)
timeout "$(allow 150)" "$PY" tools/sfl_smoke.py "$SMOKE_DIR" "$OUT/smoke.json" --device cuda --amp-dtype bfloat16

stage "3/4 configs/dtd.yaml end to end: random-weight ViT-B/16, bf16, spike.backend=cupy, 320 steps, synthetic DTD"
DTD_ROOT=$(mktemp -d)
# the test suite's fixture writer: torchvision's DTD layout, 47 classes x 120 JPEGs, partition 1's lists
"$PY" -c 'import sys; sys.path.insert(0, "tests"); from torchvision_layouts import write_dtd; write_dtd(sys.argv[1], size=96)' "$DTD_ROOT"
# 1,000 training images (VTAB-1k) / batch 64 = 16 steps per epoch x 20 epochs; test: 1,880 images, clean + 2 noisy sets
timeout "$(allow 240)" "$PY" tools/train.py configs/dtd.yaml data.root="$DTD_ROOT" model.pretrained=false \
    train.device=cuda spike.backend=cupy train.amp=true train.amp_dtype=bfloat16 train.epochs=20 train.warmup_epochs=2 \
    data.num_workers=8 eval.corruptions=[gaussian_noise] eval.severities=[3] eval.gaussian_std=[0.1] \
    eval.corruption_table=imagenet output_dir="$OUT/runs"
# spike.backend=cupy is refused before training unless the CuPy kernel is there, so finishing means it ran
"$PY" - "$OUT/runs/dtd-spike_nvpt-s0" "$OUT/dtd_smoke.json" <<'CHECK'
import json, math, statistics, sys
from pathlib import Path
run, report_path = Path(sys.argv[1]), Path(sys.argv[2])
results = json.loads((run / "results.json").read_text())
history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
report = {"images": results["images"], "epochs": len(history), "steps": 16 * len(history),
          "median_epoch_s": statistics.median(h["epoch_time_s"] for h in history[2:]),
          "train_loss": [h["train_loss"] for h in history], "firing_rate": [h.get("firing_rate") for h in history],
          "clean": results["clean"], "mean_corrupted": results["mean_corrupted"], "eval_time_s": results["eval_time_s"]}
report_path.write_text(json.dumps(report, indent=1) + "\n")
print({k: v for k, v in report.items() if k not in ("train_loss", "firing_rate")})
assert report["images"] == {"train": 1000, "val": 0, "test": 1880}, report["images"]
assert report["epochs"] == 20 and all(math.isfinite(x) for x in report["train_loss"]), "a training loss is not finite"
print(f"dtd smoke OK: {report['steps']} steps, median epoch {report['median_epoch_s']:.2f} s (16 steps of batch 64)")
CHECK

stage "4/4 benchmark: ViT-B/16 (configs/dtd.yaml, random weights), batch 64"
if fits 60; then
    timeout "$(allow 180)" "$PY" tools/benchmark.py configs/dtd.yaml --device cuda --batch-size 64 --repeats 20 --warmup 5 \
        --sfl-batches 1 8 64 --time-steps 4 8 --out "$OUT/benchmark-dtd-cuda.json"
fi
stage "benchmark: demo ViT (configs/demo/spike_nvpt.yaml), batch 64"
if fits 40; then
    timeout "$(allow 90)" "$PY" tools/benchmark.py configs/demo/spike_nvpt.yaml --device cuda --batch-size 64 --repeats 20 \
        --warmup 5 --out "$OUT/benchmark-demo-cuda.json"
fi

stage "done in $((SECONDS - START)) s"
