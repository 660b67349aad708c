#!/usr/bin/env bash
# The method study of docs/protocol.md, selection on the VALIDATION split (eval.split=val), grayscale
# textures, 3 seeds per point. Finished runs are reused: the script can be stopped and restarted.
#   bash tools/reproduce_study.sh recipe vpt_deep     # 1. coordinate-wise recipe search of one method
#   bash tools/reproduce_study.sh recipe spike_nvpt
#   bash tools/reproduce_study.sh variants            # 2. Spike-NVPT readings (configs/study/*.yaml)
#   bash tools/reproduce_study.sh matched             # post hoc: both methods at 32 tokens, grayscale and colour
# Tables: runs/study/<method>/sweep.md and runs/study/variants/comparison.md (copied to docs/results/).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 MPLBACKEND=Agg
CFG=configs/experiments/textures.yaml
OUT=runs/study

point() {  # method lr epochs length -> $POINTS/<method>/lr<lr>-e<epochs>-p<length>/comparison.json
  local dir=${POINTS:-$OUT}/$1/lr$2-e$3-p$4
  [ -f $dir/comparison.json ] && return 0
  mkdir -p $dir
  $PY tools/compare.py $CFG train.threads=1 eval.split=val train.base_lr=$2 train.epochs=$3 prompt.length=$4 \
      output_dir=$dir/runs --out $dir --methods $1 --reference $1 --seeds 3 > $dir/log.txt
}

matched() {  # config runs-dir out-dir: both methods with Spike-NVPT's chosen recipe (32 tokens), validation split
  mkdir -p $3
  $PY tools/compare.py $1 train.threads=1 eval.split=val train.base_lr=0.25 train.epochs=48 prompt.length=32 \
      output_dir=$2 --out $3 --methods spike_nvpt vpt_deep --seeds 3 > $3/log.txt
}

best() {  # method -> the point with the best mean clean validation accuracy so far
  $PY tools/sweep_table.py $OUT/$1/*/comparison.json --by clean --print-best point
}

case "${1:-}" in
  recipe)
    m=$2
    for lr in 0.25 1 4; do point $m $lr 24 8; done
    b=$(best $m); lr=${b#lr}; lr=${lr%%-*}
    point $m $lr 48 8
    b=$(best $m); e=${b#*-e}; e=${e%%-*}
    point $m $lr $e 16
    $PY tools/sweep_table.py $OUT/$m/*/comparison.json --by clean --out $OUT/$m/sweep.md
    echo "best point of $m: $(best $m)"
    ;;
  variants)
    $PY tools/compare.py $CFG train.threads=1 eval.split=val output_dir=$OUT/variants/runs --out $OUT/variants \
        --seeds 3 --methods vpt_deep configs/study/*.yaml
    # the rule: the best mCA among the variants within 1.5 clean points of tuned VPT-deep
    floor=$($PY -c "import json; c = json.load(open('$OUT/variants/comparison.json')); print(c['accuracy']['vpt_deep']['clean']['mean'] - 1.5)")
    $PY tools/sweep_table.py $OUT/variants/comparison.json --by mca --min-clean $floor --exclude vpt_deep --out $OUT/variants/sweep.md
    echo "chosen: $($PY tools/sweep_table.py $OUT/variants/comparison.json --by mca --min-clean $floor --exclude vpt_deep --print-best row)"
    ;;
  matched)
    # Post hoc (after the final test, docs/results.md): is the gain prompt length? Spike-NVPT's chosen recipe
    # (lr 0.25, 48 epochs, 32 tokens) against VPT-deep with the same 32 tokens, still on the validation split.
    # (points in $OUT/posthoc, so that `recipe vpt_deep` never sees them)
    POINTS=$OUT/posthoc point vpt_deep 0.25 48 32
    # can a 32-token VPT-deep regain clean accuracy with another learning rate?
    POINTS=$OUT/posthoc point vpt_deep 1 48 32; POINTS=$OUT/posthoc point vpt_deep 4 48 32
    $PY tools/sweep_table.py $OUT/posthoc/vpt_deep/*/comparison.json --by clean --out $OUT/posthoc/vpt_deep/sweep.md
    # grayscale reuses the vpt_deep runs of the first point; colour trains its own
    matched $CFG $OUT/posthoc/vpt_deep/lr0.25-e48-p32/runs $OUT/matched_length32
    matched configs/experiments/textures_color.yaml $OUT/matched_length32_color/runs $OUT/matched_length32_color
    ;;
  *)
    echo "usage: bash tools/reproduce_study.sh recipe METHOD | variants | matched" >&2; exit 2 ;;
esac
