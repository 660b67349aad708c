#!/usr/bin/env bash
# GPU checks on a lent CUDA machine (written for the H200 device; ~3-5 minutes after start-up):
#   1. the CuPy vs torch SFL identity test      (pytest tests/test_spiking.py -k cupy; skipped without CUDA)
#   2. a spike_nvpt training smoke on CUDA      (AMP bf16; asserts the SFL ran in fp32 on the cupy backend chosen by auto)
#   3. the benchmark on configs/dtd.yaml        (ViT-B/16 224 px, random weights, batch 64) and on the demo ViT
# Everything lands in $OUT: gpu_check.log, smoke.json, benchmark-dtd-cuda.json, benchmark-demo-cuda.json.
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
stage() { echo; echo "=== [$((SECONDS - START)) s] $*"; }
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

stage "1/3 CuPy vs torch Signal Filtering Layer (spikes identical, gradients close)"
timeout 240 "$PY" -m pytest -q -p no:cacheprovider tests/test_spiking.py -k cupy -rA | tee "$OUT/pytest_cupy.txt"
grep -q "PASSED tests/test_spiking.py::test_cupy_and_torch_backends_agree" "$OUT/pytest_cupy.txt" \
    || { echo "the CuPy identity test did not run and pass (skipped?)"; exit 1; }

stage "2/3 spike_nvpt training smoke on CUDA, AMP bf16"
SMOKE_DIR=$(mktemp -d)
timeout 300 "$PY" - "$SMOKE_DIR" "$OUT/smoke.json" <<'EOF'
import json, math, sys
import torch
from nvpt.config import load_config
from nvpt.engine.run import run_training
from nvpt.spiking import signal_filter

seen = []  # every SFL call during training and evaluation: backend, dtypes, autocast state
original = signal_filter.SignalFilteringLayer.forward

def spy(self, currents):
    spikes = original(self, currents)
    seen.append({"backend": self.backend, "in": str(currents.dtype), "out": str(spikes.dtype),
                 "device": currents.device.type, "autocast": torch.is_autocast_enabled("cuda"),
                 "grad": currents.requires_grad})
    return spikes

signal_filter.SignalFilteringLayer.forward = spy
cfg = load_config("configs/demo/spike_nvpt.yaml", [
    "model.pretrained_file=null", "train.device=cuda", "train.amp=true", "train.amp_dtype=bfloat16",
    "spike.backend=auto", "train.epochs=2", "train.warmup_epochs=0", "data.train_per_class=16",
    "data.test_per_class=8", "eval.gaussian_std=[0.1]", "train.threads=4", f"output_dir={sys.argv[1]}"])
result = run_training(cfg, log=print, show_progress=False)
trained = [s for s in seen if s["grad"]]
report = {"sfl_calls": len(seen), "sfl_training_calls": len(trained),
          "backends": sorted({s["backend"] for s in seen}), "input_dtypes": sorted({s["in"] for s in seen}),
          "output_dtypes": sorted({s["out"] for s in seen}), "devices": sorted({s["device"] for s in seen}),
          "autocast_inside_sfl": sorted({s["autocast"] for s in seen}),
          "history": result.history, "clean_acc": result.summary["clean"]}
print(json.dumps({k: v for k, v in report.items() if k != "history"}))
with open(sys.argv[2], "w") as handle:
    json.dump(report, handle, indent=1)
assert trained, "no SFL call with gradients: spike_nvpt did not train"
assert report["backends"] == ["cupy"], f"auto did not pick the cupy backend on CUDA: {report['backends']}"
assert report["input_dtypes"] == report["output_dtypes"] == ["torch.float32"], "the SFL did not run in fp32"
assert report["devices"] == ["cuda"] and report["autocast_inside_sfl"] == [False]
assert all(math.isfinite(h["train_loss"]) for h in result.history)
print("smoke OK: SFL on cupy in fp32 inside bf16 autocast training")
EOF

stage "3/3 benchmark: ViT-B/16 (configs/dtd.yaml, random weights), batch 64"
timeout 420 "$PY" tools/benchmark.py configs/dtd.yaml --device cuda --batch-size 64 --repeats 20 --warmup 5 \
    --sfl-batches 1 8 64 --time-steps 4 8 --out "$OUT/benchmark-dtd-cuda.json"
stage "benchmark: demo ViT (configs/demo/spike_nvpt.yaml), batch 64"
timeout 240 "$PY" tools/benchmark.py configs/demo/spike_nvpt.yaml --device cuda --batch-size 64 --repeats 20 --warmup 5 \
    --out "$OUT/benchmark-demo-cuda.json"

stage "done in $((SECONDS - START)) s"
