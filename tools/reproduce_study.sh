#!/usr/bin/env bash
# The method study of docs/protocol.md, selection on the VALIDATION split (eval.split=val), grayscale
# textures, 3 seeds per point. Finished runs are reused: the script can be stopped and restarted.
#   bash tools/reproduce_study.sh recipe vpt_deep     # 1. coordinate-wise recipe search of one method
#   bash tools/reproduce_study.sh recipe spike_nvpt
#   bash tools/reproduce_study.sh variants            # 2. Spike-NVPT readings (configs/study/*.yaml)
#   bash tools/reproduce_study.sh matched             # post hoc: both methods at 32 tokens, grayscale and colour
#   bash tools/reproduce_study.sh peft-select [METHOD...]  # issue 21: the PEFT baselines' recipes on validation
#   bash tools/reproduce_study.sh peft-final          # issue 21: every method, test split, 5 seeds, full suite
#     (ONLY="m ..." first trains a subset, e.g. on a second core; the table and figure go to docs/results/peft/)
# Issue 22, accuracy-robustness fronts (docs/protocol.md, "Fronts"; run in this order):
#   bash tools/reproduce_study.sh fronts              # both methods, lr x {8, 32} tokens x 3 seeds, validation
#   bash tools/reproduce_study.sh fronts-final        # the pre-registered final: 5 seeds, test split
#   bash tools/reproduce_study.sh probe64             # the 64-px backbone against random init, frozen linear probe
#   bash tools/reproduce_study.sh fronts64            # the minority-prompt regime: 64 px, lr x {8, 16} tokens
# Tables: runs/study/<method>/sweep.md and runs/study/variants/comparison.md (copied to docs/results/); the fronts'
# cases write docs/results/study/fronts*.md, probe64.md and the figures themselves.
# Environment (defaults in brackets; the plumbing test shrinks everything with them): PY [.venv/bin/python],
# OUT [runs/study], DOCS [docs/results/study], LRS [0.25 0.5 1 2 4], LRS64 [0.25 1 4], SEEDS [3], FINAL_SEEDS [5],
# ARGS [extra key=value overrides for every run of the fronts' cases], FRONTS_CFG, FRONTS64_CFG [the task configs],
# FRONTS_METHODS [fronts/fronts64: only these methods' points, no table; fronts-final: one method's runs, no
# markdown; e.g. one method per core, then the full call, which reuses what they trained].
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 MPLBACKEND=Agg
CFG=configs/experiments/textures.yaml
OUT=${OUT:-runs/study}
DOCS=${DOCS:-docs/results/study}
LRS=${LRS:-0.25 0.5 1 2 4}
LRS64=${LRS64:-0.25 1 4}  # fronts64: the study's step-1 grid (a 64-px run costs about 2.5 times a 32-px one)
SEEDS=${SEEDS:-3}
FINAL_SEEDS=${FINAL_SEEDS:-5}
ARGS=${ARGS:-}
FRONTS_CFG=${FRONTS_CFG:-configs/experiments/textures_fronts.yaml}
FRONTS64_CFG=${FRONTS64_CFG:-configs/experiments/textures64.yaml}
TARGET=95  # fronts-final's clean-accuracy target (%), fixed in docs/protocol.md before the sweep ran

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

sweep_fronts() {  # config "lrs" "lengths" name title: both methods, validation split -> $OUT/<name>, $DOCS/<name>.md/.png
  $PY tools/fronts.py sweep $1 train.threads=1 eval.split=val $ARGS --methods ${FRONTS_METHODS:-vpt_deep spike_nvpt} \
      --lrs $2 --lengths $3 --seeds $SEEDS --out $OUT/$4
  [ -n "${FRONTS_METHODS:-}" ] && return 0  # one method's points only (a second core); the full call writes the table
  mkdir -p $DOCS
  $PY tools/fronts.py table $OUT/$4/*/*/comparison.json --out $DOCS/$4 --title "$5"
}

best() {  # method -> the point with the best mean clean validation accuracy so far
  $PY tools/sweep_table.py $OUT/$1/*/comparison.json --by clean --print-best point
}

# --- issue 21, the PEFT comparison (docs/protocol.md, "The PEFT comparison"). For a quick check of the commands:
#   PEFT_OUT=/tmp/peft RECIPES=/tmp/peft/recipes SEL_SEEDS=1 FINAL_SEEDS=1 EPOCHS="1 2" \
#   EXTRA="data.train_per_class=2 data.val_per_class=2 data.test_per_class=2" bash tools/reproduce_study.sh peft-select
PEFT="bitfit adapter lora ssf"
PEFT_OUT=${PEFT_OUT:-$OUT/peft}
RECIPES=${RECIPES:-configs/experiments/peft_recipes}  # the chosen recipes, one YAML per method (commit them)
read -r E1 E2 <<< "${EPOCHS:-24 48}"
EXTRA=${EXTRA:-}
PEFT_DOCS=${PEFT_DOCS:-docs/results/peft}  # the tables and the figure of docs/results.md

peft_point() {  # method lr epochs -> $PEFT_OUT/<method>/lr<lr>-e<epochs>/comparison.json (3 seeds, validation)
  local dir=$PEFT_OUT/$1/lr$2-e$3
  [ -f $dir/comparison.json ] || [ -f $dir/failed ] && return 0
  mkdir -p $dir
  # a learning rate that diverges (NonFiniteLoss) is a point without a score, not the end of the search
  $PY tools/compare.py $CFG train.threads=1 eval.split=val train.base_lr=$2 train.epochs=$3 $EXTRA \
      output_dir=$dir/runs --out $dir --methods $1 --reference $1 --seeds ${SEL_SEEDS:-3} > $dir/log.txt 2>&1 \
    || { echo "$1 lr $2 e$3 failed (diverged?): $dir/log.txt" | tee $dir/failed >&2; }
}

peft_best() {  # method -> its best point so far (mean clean validation accuracy), e.g. lr0.25-e24
  $PY tools/sweep_table.py $PEFT_OUT/$1/*/comparison.json --by clean --print-best point
}

case "${1:-}" in
  peft-select)
    shift
    for m in ${@:-$PEFT}; do
      case " $PEFT " in *" $m "*) ;; *) echo "error: peft-select takes $PEFT, not $m" >&2; exit 2 ;; esac
      # 1. the learning-rate ladder (SGD, the shared recipe), 3 seeds per point, E1 epochs
      for lr in 0.0625 0.25 1; do peft_point $m $lr $E1; done
      b=$(peft_best $m); lr=${b#lr}; lr=${lr%%-*}
      # 2. a best point at an end of the ladder gets one more point a factor 4 beyond it
      case $lr in
        0.0625) peft_point $m 0.015625 $E1 ;;
        1) peft_point $m 4 $E1 ;;
      esac
      b=$(peft_best $m); lr=${b#lr}; lr=${lr%%-*}
      # 3. the longer schedule at the best learning rate
      peft_point $m $lr $E2
      b=$(peft_best $m); lr=${b#lr}; lr=${lr%%-*}; e=${b#*-e}
      $PY tools/sweep_table.py $PEFT_OUT/$m/*/comparison.json --by clean --out $PEFT_OUT/$m/sweep.md
      # every point for docs/results.md, the diverged ones too (no score)
      mkdir -p $PEFT_DOCS
      { cat $PEFT_OUT/$m/sweep.md
        for f in $PEFT_OUT/$m/*/failed; do
          [ -f $f ] && p=${f%/failed} && echo "| ${p##*/} | $m | — | diverged (non-finite loss), no score | — |"
        done; } > $PEFT_DOCS/select_$m.md
      mkdir -p $RECIPES
      base=$($PY -c "import os, sys; print(os.path.relpath(sys.argv[1], sys.argv[2]))" \
             "${FINAL_CFG:-configs/experiments/peft.yaml}" "$RECIPES")
      printf '%s\n' "# $m's recipe for the PEFT comparison, chosen on the validation split by" \
        "# bash tools/reproduce_study.sh peft-select $m (points: $PEFT_DOCS/select_$m.md; docs/protocol.md)." \
        "_base_: $base" "prompt:" "  method: $m" "train:" "  base_lr: $lr" "  epochs: $e" > $RECIPES/$m.yaml
      echo "best point of $m: $b -> $RECIPES/$m.yaml"
    done
    ;;
  peft-final)
    [ -n "${ONLY:-}" ] || for m in $PEFT; do  # a part (ONLY) may run before every recipe is chosen
      [ -f $RECIPES/$m.yaml ] || { echo "error: no $RECIPES/$m.yaml: run 'bash tools/reproduce_study.sh peft-select' first" >&2; exit 2; }
    done
    # once, on the test split, 5 seeds: the prompt methods with their recipes (peft_<method>.yaml), linear and
    # vpt_shallow on the demo recipe, full with its own, the four baselines with theirs (labelled by file name)
    # ONLY="m1 m2 ..." trains and scores just those entries (names or recipe paths as below) into a scratch folder,
    # e.g. in a second shell to use a second core; the full call then reuses their finished runs.
    F=${FINAL_CFG:-configs/experiments/peft.yaml}
    ALL="spike_nvpt vpt_deep vpt_shallow linear full $(for m in $PEFT; do echo $RECIPES/$m.yaml; done)"
    FINAL_OUT=${FINAL_OUT:-runs/experiments/peft/compare-peft}
    if [ -n "${ONLY:-}" ]; then
      set -- $ONLY
      $PY tools/compare.py $F train.threads=1 $EXTRA --seeds ${FINAL_SEEDS:-5} --reference $(basename ${1%.yaml}) \
          --out $FINAL_OUT-part-$(echo "$ONLY" | tr -c 'a-z0-9_\n' _ | head -c 60) --methods $ONLY
      exit 0
    fi
    $PY tools/compare.py $F train.threads=1 $EXTRA --seeds ${FINAL_SEEDS:-5} --reference vpt_deep \
        --out $FINAL_OUT --methods $ALL
    # the table and the figure of docs/results.md, and the protocol's verdict: Spike-NVPT's rank and paired gains,
    # the most robust method per trainable parameter, every method's deployed FLOPs
    mkdir -p $PEFT_DOCS
    cp $FINAL_OUT/comparison.md $FINAL_OUT/accuracy_robustness.png $PEFT_DOCS/
    $PY tools/standing.py $FINAL_OUT/comparison.json --method spike_nvpt --out $PEFT_DOCS/standing.md
    ;;

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
  fronts)
    # every method x lr x {8, 32} tokens, validation split; the table, effective robustness and figure
    sweep_fronts $FRONTS_CFG "$LRS" "8 32" fronts "Fronts: grayscale study task, validation split"
    ;;
  fronts-final)
    # the rule of docs/protocol.md ("Fronts"): per length, each method at the lr closest to $TARGET % clean (validation)
    mkdir -p $DOCS
    $PY tools/fronts.py final $FRONTS_CFG train.threads=1 eval.split=test $ARGS --sweep $OUT/fronts \
        --target $TARGET --lengths 8 32 --lrs $LRS --seeds $FINAL_SEEDS --out $OUT/fronts_final --md $DOCS/fronts_final.md \
        --methods ${FRONTS_METHODS:-vpt_deep spike_nvpt}  # one method: its runs only (a second core); then both
    ;;
  fronts64)
    # the minority-prompt regime: 64 px, at most a quarter of the 81 tokens as prompts (8, 16); validation split
    sweep_fronts $FRONTS64_CFG "$LRS64" "8 16" fronts64 "Fronts at 64 px (the minority-prompt regime), validation split"
    ;;
  probe64)
    # does the 64-px backbone carry images? A frozen linear probe on it against one on a random-init ViT of the same
    # shape (grayscale, clean validation crops, paired by seed; done when the gain is >= 10 points)
    dir=$OUT/probe64
    mkdir -p $dir $DOCS
    base=$(realpath $FRONTS64_CFG)
    printf '_base_: %s\nprompt:\n  method: linear\n' "$base" > $dir/pretrained.yaml
    printf '_base_: %s\nprompt:\n  method: linear\nmodel:\n  pretrained_file: null\n' "$base" > $dir/random.yaml
    $PY tools/compare.py $FRONTS64_CFG train.threads=1 eval.split=val eval.corruptions=[] eval.gaussian_std=[] $ARGS \
        output_dir=$dir/runs --out $dir --methods $dir/pretrained.yaml $dir/random.yaml --reference random \
        --seeds $SEEDS > $dir/log.txt
    { echo "# Frozen linear probe, 64-px backbone against random init (grayscale, validation crops)"; echo
      echo "bash tools/reproduce_study.sh probe64; done when pretrained − random is at least 10 points."; echo
      cat $dir/comparison.md; } > $DOCS/.probe64.md.tmp && mv $DOCS/.probe64.md.tmp $DOCS/probe64.md
    cat $DOCS/probe64.md
    ;;
  *)
    echo "usage: bash tools/reproduce_study.sh recipe METHOD | variants | matched | peft-select [METHOD...] | peft-final | fronts | fronts-final | fronts64 | probe64" >&2
    exit 2 ;;
esac
