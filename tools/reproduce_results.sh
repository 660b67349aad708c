#!/usr/bin/env bash
# Every number in docs/results.md comes from these commands (CPU, 2 cores; about 3 h without the appendix and the
# fronts of section 6, which add about 13 h of one core).
# Finished runs are reused, unfinished ones resumed, so the script can be stopped and restarted.
#   bash tools/reproduce_results.sh            # sections 1-5
#   bash tools/reproduce_results.sh appendix   # the first protocol, on the Fashion-MNIST backbone
#   bash tools/reproduce_results.sh peft       # issue 21: the PEFT baselines (docs/protocol.md; ~2 h + ~4.5 h on one core)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 MPLBACKEND=Agg
T="train.threads=1"

if [ "${1:-}" = appendix ]; then
  A=configs/appendix_fmnist
  ALL="spike_nvpt vpt_deep vpt_shallow linear full"
  $PY tools/compare.py $A/textures.yaml $T --seeds 3 --out runs/appendix_fmnist/ablations/compare \
      --methods vpt_deep spike_nvpt $A/ablations/*.yaml
  $PY tools/compare.py $A/textures.yaml $T --seeds 5 --methods $ALL
  $PY tools/compare.py $A/textures_color.yaml $T --seeds 5 --methods $ALL
  $PY tools/compare.py $A/textures.yaml $T model.pretrained_file=null \
      output_dir=runs/appendix_fmnist/random_backbone --seeds 3 --methods spike_nvpt vpt_deep linear
  $PY tools/compare.py $A/textures_strong_noise.yaml $T --seeds 5 --methods spike_nvpt vpt_deep
  exit 0
fi

if [ "${1:-}" = peft ]; then
  # 6. The conventional PEFT baselines beside the prompt methods (docs/protocol.md, "The PEFT comparison"):
  #    each baseline's recipe on validation, then every method once on the test split, 5 seeds, the full suite
  bash tools/reproduce_study.sh peft-select
  bash tools/reproduce_study.sh peft-final
  exit 0
fi

# 0. The demo backbone itself (nvpt/assets/DEMO_BACKBONE.md; ~35 min on one core), only when asked to:
#    make pretrain && cp runs/pretrain/backbone-full-s0/backbone.safetensors nvpt/assets/demo_backbone.safetensors

# 1. Does the backbone carry images? The demo recipe on the synthetic-pretrained, a random and the
#    Fashion-MNIST backbone (3 seeds; VPT-deep and the linear probe on grayscale, the linear probe on colour)
B=runs/experiments/backbone
FM=nvpt/assets/fashion_mnist_backbone.safetensors
backbone() { local out=$1; shift; $PY tools/compare.py configs/experiments/backbone.yaml $T output_dir=$out/runs --out $out --seeds 3 "$@"; }
backbone $B/synthetic-gray data.grayscale=true --methods vpt_deep linear
backbone $B/random-gray data.grayscale=true model.pretrained_file=null --methods vpt_deep linear
backbone $B/fmnist-gray data.grayscale=true model.pretrained_file=$FM --methods vpt_deep linear
backbone $B/synthetic-color data.grayscale=false --methods linear --reference linear
backbone $B/random-color data.grayscale=false model.pretrained_file=null --methods linear --reference linear
$PY tools/sweep_table.py $B/*/comparison.json --out $B/summary.md

# 2. The method study, selection on the validation split (docs/protocol.md)
bash tools/reproduce_study.sh recipe vpt_deep
bash tools/reproduce_study.sh recipe spike_nvpt
bash tools/reproduce_study.sh variants

# 3. The final test, once, 5 seeds, grayscale and colour, the chosen defaults
FINAL="spike_nvpt vpt_deep"
$PY tools/compare.py configs/experiments/textures.yaml $T --seeds 5 --methods $FINAL
$PY tools/compare.py configs/experiments/textures_color.yaml $T --seeds 5 --methods $FINAL
# post hoc, validation split again: VPT-deep with Spike-NVPT's 32 tokens (is the gain prompt length?)
bash tools/reproduce_study.sh matched

# 4. The full ImageNet-C corruption suite (19 corruptions x 5 severities, CIFAR-10-C constants), the demo task, 3 seeds
$PY tools/compare.py configs/experiments/textures_corruptions.yaml $T --seeds 3 --methods spike_nvpt vpt_deep
for p in 8 32; do  # both methods at the same prompt length
  $PY tools/compare.py configs/experiments/textures_corruptions.yaml $T prompt.length=$p \
      output_dir=runs/experiments/textures_corruptions_p$p --seeds 3 --methods spike_nvpt vpt_deep
done

# 5. The demo (README) and its figures (visualizations/)
$PY tools/demo.py
$PY tools/visualize_spikes.py runs/demo/spike_nvpt-s0 --runs runs/demo/spike_nvpt-s0 runs/demo/vpt_deep-s0 --out visualizations

# 6. Accuracy-robustness fronts (issue 22; docs/protocol.md, "Fronts"), each case resumable, in this order: the sweep
#    on validation (~4 h on one core), the pre-registered final on test (~2 h); the 64-px regime needs
#    nvpt/assets/demo_backbone64.safetensors (nvpt/assets/DEMO_BACKBONE64.md): its probe (~20 min), its sweep (~6.5 h)
bash tools/reproduce_study.sh fronts
bash tools/reproduce_study.sh fronts-final
bash tools/reproduce_study.sh probe64
bash tools/reproduce_study.sh fronts64
