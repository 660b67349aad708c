#!/usr/bin/env bash
# Every number in docs/results.md comes from these commands (CPU, ~1-2 h on 2 cores).
# Finished runs are reused, so the script can be stopped and restarted.
#   bash tools/reproduce_results.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 MPLBACKEND=Agg
ALL="spike_nvpt vpt_deep vpt_shallow linear full"

# 1. Ablations of Spike-NVPT against VPT-deep (3 seeds, grayscale textures)
$PY tools/compare.py configs/experiments/textures.yaml train.threads=1 --seeds 3 \
    --out runs/ablations/compare --methods vpt_deep spike_nvpt configs/ablations/*.yaml

# 2. Main comparison, 5 seeds, grayscale (the demo task) and colour textures
$PY tools/compare.py configs/experiments/textures.yaml train.threads=1 --seeds 5 --methods $ALL
$PY tools/compare.py configs/experiments/textures_color.yaml train.threads=1 --seeds 5 --methods $ALL

# 3. Does the demo backbone transfer? The same prompt tuning on a randomly initialised frozen ViT
$PY tools/compare.py configs/experiments/textures.yaml train.threads=1 model.pretrained_file=null \
    output_dir=runs/experiments/random_backbone --seeds 3 --methods spike_nvpt vpt_deep linear

# 4. The demo (README) and its figures (visualizations/)
$PY tools/demo.py
$PY tools/visualize_spikes.py runs/demo/spike_nvpt-s0 --runs runs/demo/spike_nvpt-s0 runs/demo/vpt_deep-s0 --out visualizations

# 5. Stronger noise (ImageNet-C constants + Gaussian std up to 0.3), added after the demo
$PY tools/compare.py configs/experiments/textures_strong_noise.yaml train.threads=1 --seeds 5 --methods spike_nvpt vpt_deep

# 6. The full ImageNet-C corruption suite (19 corruptions x 5 severities, CIFAR-10-C constants), 3 seeds
$PY tools/compare.py configs/experiments/textures_corruptions.yaml train.threads=1 --seeds 3 --methods spike_nvpt vpt_deep
