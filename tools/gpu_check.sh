#!/usr/bin/env bash
# GPU checks on a lent CUDA machine (written for the H200 device): one prepared script of at most 10 minutes
# (every stage's timeout is cut to what is left of a 9-minute budget, set-up included, and an optional stage
# that no longer fits is skipped):
#   1. CuPy itself, then the CuPy vs torch SFL identity test (pytest tests/test_spiking.py -k cupy; skipped without CUDA)
#   2. a spike_nvpt training smoke on CUDA   (tools/sfl_smoke.py: AMP bf16; the SFL ran in fp32 on the cupy backend)
#   3. train / eval throughput of ViT-B/16 in bf16 at 224 px (tools/benchmark.py configs/dtd.yaml, random weights,
#      batch 64), with the benchmark's Spike-NVPT vs VPT targets
#   4. the evaluation pipeline on CUDA       (tools/benchmark.py --eval --device cuda --eval-sets all: every corruption
#      x severity and the default sigmas, on 224-px images decoded from 500x375 photograph-like JPEGs; the loader
#      cached and uncached)
#   5. a `make paper` smoke on tiny data     (tools/reproduce_paper.py on synthetic DTD, ViT-B/16 random weights,
#      spike.backend=cupy, bf16, one worker per visible GPU, one shared evaluation pass)
#   6. the figures: $OUT/gpu_check.json (copy it to docs/performance/gpu_check.json: nvpt/cost.py then uses the
#      measured MFU and corruption cost instead of assumptions) and $OUT/performance_gpu.md (the fragment for
#      docs/performance.md's GPU section)
# Everything lands in $OUT: gpu_check.log, pytest_cupy.txt, smoke.json, benchmark-dtd-cuda.json, eval-cuda.json,
# paper/ (the smoke's runs, journal and tables), gpu_check.json, performance_gpu.md.
#
# The device machine has no internet and its own python3 with torch, timm, CuPy, safetensors, pytest (see
# /work/.library/device/KINDS.md), but no SpikingJelly: carry its wheel. Once, in the repo root here:
#   echo /.whl/ >> .git/info/exclude
#   .venv/bin/pip download spikingjelly==0.0.0.0.14 --no-deps -d .whl      # pure-Python wheel, 0.4 MB
# then: device run(command="bash tools/gpu_check.sh", carry=[".whl"], timeout_s=600)
# Wheels of any other missing package can go into .whl too (NVPT_WHEELS=dir overrides the folder).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-/tmp/nvpt-gpu-out}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/gpu_check.log") 2>&1
START=$SECONDS
BUDGET=${NVPT_GPU_BUDGET_S:-540}  # the whole script, set-up included
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


stage "1/6 CuPy, then the CuPy vs torch Signal Filtering Layer (spikes identical, gradients close)"
"$PY" - <<'EOF'
import cupy
x = cupy.arange(1 << 20, dtype=cupy.float32)
assert float((x * 2).sum()) == float(x.sum()) * 2, "a CuPy kernel computed a wrong sum"
print("cupy", cupy.__version__, "devices", cupy.cuda.runtime.getDeviceCount(), "runtime", cupy.cuda.runtime.runtimeGetVersion())
EOF
timeout "$(allow 150)" "$PY" -m pytest -q -p no:cacheprovider tests/test_spiking.py -k cupy -rA | tee "$OUT/pytest_cupy.txt"
grep -q "PASSED tests/test_spiking.py::test_cupy_and_torch_backends_agree" "$OUT/pytest_cupy.txt" \
    || { echo "the CuPy identity test did not run and pass (skipped?)"; exit 1; }

stage "2/6 spike_nvpt training smoke on CUDA, AMP bf16, SFL on the cupy backend"
SMOKE_DIR=$(mktemp -d)
timeout "$(allow 120)" "$PY" tools/sfl_smoke.py "$SMOKE_DIR" "$OUT/smoke.json" --device cuda --amp-dtype bfloat16

stage "3/6 train / eval throughput: ViT-B/16 224 px bf16 (configs/dtd.yaml, random weights), batch 64"
if fits 60; then
    timeout "$(allow 150)" "$PY" tools/benchmark.py configs/dtd.yaml --device cuda --batch-size 64 --repeats 10 \
        --warmup 3 --sfl-batches 1 8 64 --time-steps 4 8 --out "$OUT/benchmark-dtd-cuda.json"
fi

stage "4/6 evaluation pipeline on CUDA: every set on 224-px images from 500x375 JPEGs; the loader cached and uncached"
if fits 60; then
    timeout "$(allow 150)" "$PY" tools/benchmark.py --eval --device cuda --eval-sets all --eval-images 256 \
        --forward-images 256 --loader-images 64 --repeats 3 --no-baseline --out "$OUT/eval-cuda.json"
fi

stage "5/6 make paper smoke: synthetic DTD, ViT-B/16 random weights, spike_nvpt (cupy) + vpt_deep, 2 epochs"
if fits 90; then
    DTD_ROOT=$(mktemp -d)
    "$PY" -c 'import sys; sys.path.insert(0, "tests"); from torchvision_layouts import write_dtd; write_dtd(sys.argv[1], size=96, per_list=4)' "$DTD_ROOT"
    timeout "$(allow 180)" "$PY" tools/reproduce_paper.py --tasks dtd --methods spike_nvpt vpt_deep --seeds 1 \
        --out "$OUT/paper" data.root="$DTD_ROOT" data.vtab1k=false model.pretrained=false spike.backend=cupy \
        train.device=cuda train.epochs=2 train.warmup_epochs=1 data.num_workers=8 "eval.severities=[3]" \
        "eval.gaussian_std=[0.1]"
    "$PY" - "$OUT/paper" <<'EOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
journal = [json.loads(line) for line in (out / "journal.jsonl").read_text().splitlines()]
runs = sorted(r for line in journal if line["unit"] == "train" for r in line["runs"])
assert runs == ["dtd-spike_nvpt-s0", "dtd-vpt_deep-s0"], runs
assert [line["unit"] for line in journal].count("eval") == 1 and (out / "results.md").is_file()
print("make paper smoke OK:", [(line["unit"], line["seconds"]) for line in journal])
EOF
fi

stage "6/6 figures: $OUT/gpu_check.json and $OUT/performance_gpu.md"
"$PY" - "$OUT" <<'EOF'
import json, sys
from pathlib import Path
from nvpt.benchmark_eval import gpu_figures
out = Path(sys.argv[1])
figures, fragment = gpu_figures(out)
(out / "gpu_check.json").write_text(json.dumps(figures, indent=1) + "\n")
(out / "performance_gpu.md").write_text(fragment)
print(fragment)
EOF

stage "done in $((SECONDS - START)) s"
