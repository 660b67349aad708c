#!/usr/bin/env bash
# GPU checks on a lent CUDA machine (written for the H200 device; ~3-5 minutes after start-up):
#   1. the CuPy vs torch SFL identity test      (pytest tests/test_spiking.py -k cupy; skipped without CUDA)
#   2. a spike_nvpt training smoke on CUDA      (tools/sfl_smoke.py: AMP bf16; the SFL ran in fp32 on the cupy backend auto chose)
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
timeout 300 "$PY" tools/sfl_smoke.py "$SMOKE_DIR" "$OUT/smoke.json" --device cuda --amp-dtype bfloat16

stage "3/3 benchmark: ViT-B/16 (configs/dtd.yaml, random weights), batch 64"
timeout 420 "$PY" tools/benchmark.py configs/dtd.yaml --device cuda --batch-size 64 --repeats 20 --warmup 5 \
    --sfl-batches 1 8 64 --time-steps 4 8 --out "$OUT/benchmark-dtd-cuda.json"
stage "benchmark: demo ViT (configs/demo/spike_nvpt.yaml), batch 64"
timeout 240 "$PY" tools/benchmark.py configs/demo/spike_nvpt.yaml --device cuda --batch-size 64 --repeats 20 --warmup 5 \
    --out "$OUT/benchmark-demo-cuda.json"

stage "done in $((SECONDS - START)) s"
