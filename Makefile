# make demo   - offline demo: Spike-NVPT vs VPT-deep on real textures, clean and noisy (~10 min on 2 cores)
# make test   - the test suite (CPU, offline)
# make gpu    - on a CUDA machine, the CuPy that matches torch's CUDA (make paper runs it first; no-op on CPU)
# make paper  - the paper's experiment on DTD and the VTAB-1k natural tasks (GPU, internet; resumable);
#              make paper BENCHMARK=vtab|fgvc|all: VTAB-1k's 19 tasks and / or the 5 FGVC sets
# All create .venv and install the pinned packages first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
GPU_STAMP := $(VENV)/.gpu-$(shell sha1sum pyproject.toml | cut -c1-12)
# One thread per process: torch slows down several-fold on 2 cores when the other one is busy.
RUN_ENV := OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 HF_HUB_OFFLINE=1 MPLBACKEND=Agg

.PHONY: setup gpu test demo pretrain paper benchmark benchmark-demo benchmark-corruptions benchmark-eval clean
setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -e ".[test]"
	rm -f $(VENV)/.installed-* && touch $@

# On a CUDA machine: the CuPy extra that matches torch's CUDA (.[gpu] for CUDA 13, .[gpu-cu12] for 12), so that the
# Signal Filtering Layer runs SpikingJelly's CuPy kernel; nothing on a machine without CUDA (tools/cupy_extra.py).
gpu: $(GPU_STAMP)

$(GPU_STAMP): $(STAMP)
	extra=$$($(BIN)/python tools/cupy_extra.py) && \
	if [ -n "$$extra" ]; then $(BIN)/pip install -q --disable-pip-version-check -e ".[test,$$extra]"; fi
	rm -f $(VENV)/.gpu-* && touch $@

test: $(STAMP)
	$(RUN_ENV) $(BIN)/python -m pytest -q

demo: $(STAMP)
	$(RUN_ENV) $(BIN)/python tools/demo.py

# the demo backbone from procedurally generated images (~1.5 h on one core; resumes: see nvpt/assets/DEMO_BACKBONE.md)
pretrain: $(STAMP)
	$(RUN_ENV) $(BIN)/python tools/pretrain.py configs/demo/backbone.yaml

# Spike-NVPT, VPT-deep, linear, full x 6 tasks x 3 seeds; prints the plan and its estimated time per part (GPU,
# loader, corruption, checkpoint I/O) first, reuses finished runs and resumes unfinished ones (runs/paper); one
# worker process per visible GPU. Downloads data (torchvision) and weights (timm). Installs the matching CuPy first
# on a CUDA machine (make gpu). Pass options through ARGS, e.g. make paper ARGS="--estimate-only",
# ARGS="data.num_workers=12", ARGS="--shard 1/4" (a SLURM array task).
# make paper BENCHMARK=vtab|fgvc|all: the benchmark, each task's lr x wd chosen on val first (docs/datasets.md).
paper: $(GPU_STAMP)
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 MPLBACKEND=Agg $(BIN)/python tools/reproduce_paper.py $(if $(BENCHMARK),--benchmark $(BENCHMARK)) $(ARGS)

# ViT-B/16 (configs/dtd.yaml, random weights: speed does not depend on them), ~12 min on one core
benchmark: $(STAMP)
	$(RUN_ENV) $(BIN)/python tools/benchmark.py configs/dtd.yaml --threads 1 --batch-size 8 --repeats 7 --warmup 1 --sfl-batches 1 8

# the demo ViT (dim 96, 17 tokens), ~1 min: see docs/performance.md for the two targets it sits on
benchmark-demo: $(STAMP)
	$(RUN_ENV) $(BIN)/python tools/benchmark.py configs/demo/spike_nvpt.yaml --threads 1 --repeats 40 --warmup 3

# the 19-corruption suite on the demo's 800 test images, corrupted and classified (target <= 5 min on 2 cores)
benchmark-corruptions: $(STAMP)
	$(RUN_ENV) $(BIN)/python tools/benchmark.py configs/demo/base.yaml --corruptions --threads 2

# the evaluation pipeline per set (corrupt + forward; demo ViT, ViT-B/16 at 224 px), the loader cached and uncached
# and checkpoint writes, against commit 5fb576b's code in the same process (~3 min on 2 cores); writes the CPU
# figures of make paper's estimate to docs/performance/benchmark_eval.json
benchmark-eval: $(STAMP)
	$(RUN_ENV) $(BIN)/python tools/benchmark.py --eval --threads 1

clean:
	rm -rf runs .pytest_cache
