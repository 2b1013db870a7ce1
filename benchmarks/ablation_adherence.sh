#!/usr/bin/env bash
# Ablation "report adherence": the default model against its ablations, every arm with several training seeds,
# scored on one yardstick. One command from nothing to the table (resumable: rerun it and finished work is kept).
#
#   bash benchmarks/ablation_adherence.sh runs/ablation-adherence
#
# Steps, each skipped when its output exists:
#   1. phantoms: 5,000 for training (seed 0) and 200 fresh evaluation reports (seed 1), as in docs/report-adherence.md
#   2. the yardstick classifier (benchmarks/eval_phantoms.py --save: 8,000 steps, held-out mAUC ~0.92; 34 min on
#      one CPU thread) unless YARDSTICK names a classifier folder to reuse
#   3. one VAE (seed 0) that every arm and seed shares (latent space fixed, so arms differ only where they should)
#   4. per arm and seed: `diffcxr train all --resume` (VLM, base, adapter, the run's classifier, pipeline), then
#      benchmarks/adherence_sweep.py at guidance 4 (the default) with adapter scale 2 (the default) and 0 (the
#      "no adapter" ablation: same weights, adapter off), 200 reports x 1 image, 25 DPM-Solver++ steps
#   5. laterality, per seed, every arm in one run (benchmarks/laterality_adherence.py, --baseline default when
#      the default arm runs): 1,500 phantoms (seed 2) give the first 100 reports that name a finding on one side,
#      each drawn as written and side-swapped; skip with LATERALITY=0
#   6. mean +- SD over seeds per arm (adherence_sweep.py --seed-table), each ablation against the default
#      (--baseline: difference of means in units of the larger SD, and the per-seed differences' mean +- SD
#      and t-interval) and, per seed, paired run for run
#      (adherence_sweep.py --paired: a paired bootstrap interval from the sweeps' saved scores), then the
#      laterality seed table (laterality_adherence.py --seed-table: flip rate per arm, paired arm - default),
#      written to OUT/table.md
#
# Arms (ARMS, default all four):
#   default     the shipped cpu-mini: AVA-TLS with pooled squeeze init + local loss, U-ViT last conv = identity
#   meanpool    parameter-free mean pooling instead of the learned squeeze (as the cpu-mini-no-squeeze preset)
#   released    the squeeze as released: random init, token-0 loss only
#   randomconv  the U-ViT's last conv with PyTorch's random init, as released (model.uvit.final_conv_init=random)
#   tuned       the default plus the squeeze fine-tuned by the diffusion loss in stage 1 (base.train_squeeze=true;
#               not in the default ARMS)
#   plainprompt the default with the plain knowledge prompt ("There is pleural effusion." instead of the
#               side-aware "There is left pleural effusion."; model.adapter.knowledge_sides=false; not in the
#               default ARMS)
#   fastsqueeze the default with a 10x VLM head rate (vlm.head_lr=3e-3): the squeeze's zero-initialised gate opens
#               (mean |g| ~0.09 after the VLM stage, against ~0.02 at the default rate); not in the default ARMS
#
# Environment: SEEDS (default "1 2"), ARMS, CONFIG (default cpu-mini), PARALLEL (arm-seeds trained at once,
# default 1; on a GPU machine try 6), THREADS (torch threads per training process, default 1 when PARALLEL > 1),
# DIFFCXR (default `diffcxr`), PYTHON (default `python`), YARDSTICK, N / N_EVAL (phantom counts),
# TRAIN_OVERRIDES, SWEEP_ARGS (extra arguments for both sweeps), LATERALITY (1; 0 skips step 5), N_LAT,
# LATERALITY_ARGS (extra arguments for the laterality runs, e.g. "--n-reports 200"). Cost: one arm-seed is 1.3-2.5 h on 2 CPU cores (6,000 adapter steps); on one
# H200, PARALLEL=6 THREADS=2 trained 3 arms x 2 seeds side by side in ~270 s each (GPU ~99 % busy; the sweeps then
# generate on the GPU, ~6 s per setting); the tuned arm is ~15 % slower and caches 1 GB of token states.
# TRAIN_OVERRIDES="classifier.max_steps=1" skips the run's own classifier, which the ablation does not use (the
# yardstick scores every arm).
# Smoke run (about a minute): CONFIG=tiny N=60 N_EVAL=12 YARDSTICK=<a classifier folder> SEEDS="1 2" \
#   TRAIN_OVERRIDES="vae.max_steps=2 vlm.max_steps=2 base.max_steps=2 adapter.max_steps=2 classifier.max_steps=2" \
#   SWEEP_ARGS="--n-reports 12 --steps 2 --bootstrap 0" N_LAT=40 LATERALITY_ARGS="--n-reports 6 --steps 2 \
#   --bootstrap 0" bash benchmarks/ablation_adherence.sh /tmp/abl
set -euo pipefail
out=${1:?usage: ablation_adherence.sh OUT_DIR}
diffcxr=${DIFFCXR:-diffcxr}
python=${PYTHON:-python}
config=${CONFIG:-cpu-mini}
read -r -a seeds <<< "${SEEDS:-1 2}"
read -r -a arms <<< "${ARMS:-default meanpool released randomconv}"
read -r -a train_overrides <<< "${TRAIN_OVERRIDES:-}"
read -r -a sweep_args <<< "${SWEEP_ARGS:-}"
read -r -a laterality_args <<< "${LATERALITY_ARGS:-}"
laterality=${LATERALITY:-1}
parallel=${PARALLEL:-1}
here=$(cd "$(dirname "$0")" && pwd)
size=$($diffcxr train all -c "$config" --data phantom:unused --print-config ${train_overrides[@]+"${train_overrides[@]}"} \
       | $python -c "import sys, yaml; print(yaml.safe_load(sys.stdin)['model']['image_size'])")

arm_overrides() {  # the config overrides that make an arm
  case $1 in
    default) ;;
    meanpool) echo "model.report_encoder.token_reduction=mean_pool" ;;
    released) echo "model.report_encoder.squeeze_init=random vlm.local_loss_weight=0" ;;
    randomconv) echo "model.uvit.final_conv_init=random" ;;
    tuned) echo "base.train_squeeze=true" ;;
    plainprompt) echo "model.adapter.knowledge_sides=false" ;;
    fastsqueeze) echo "vlm.head_lr=3e-3" ;;
    *) echo "ablation_adherence.sh: unknown arm '$1' (default, meanpool, released, randomconv, tuned, plainprompt," \
            "fastsqueeze)" >&2
       return 2 ;;
  esac
}
for arm in "${arms[@]}"; do arm_overrides "$arm" > /dev/null; done  # fail on a typo before hours of training

mkdir -p "$out"
[[ -f $out/phantoms/metadata.csv ]] || $diffcxr phantom --n "${N:-5000}" --size "$size" --seed 0 \
  --out "$out/phantoms" --no-progress > "$out/phantoms.log"
[[ -f $out/phantoms-eval/metadata.csv ]] || $diffcxr phantom --n "${N_EVAL:-200}" --size "$size" --seed 1 \
  --out "$out/phantoms-eval" --no-progress > "$out/phantoms-eval.log"
yardstick=${YARDSTICK:-$out/yardstick/classifier}
if [[ -z ${YARDSTICK:-} && ! -f $out/yardstick/COMPLETE.json ]]; then
  echo "[ablation] yardstick classifier (log: $out/yardstick.log)"
  $python "$here/eval_phantoms.py" --data "$out/phantoms" --size "$size" --save "$out/yardstick" > "$out/yardstick.log"
fi
if [[ ! -f $out/shared/vae/COMPLETE.json ]]; then
  echo "[ablation] shared VAE (log: $out/shared-vae.log)"
  $diffcxr train vae -c "$config" --data "phantom:$out/phantoms" --output-dir "$out/shared" --resume --no-progress \
    seed=0 ${train_overrides[@]+"${train_overrides[@]}"} > "$out/shared-vae.log" 2>&1
fi

run_arm_seed() {  # run_arm_seed ARM SEED: train every stage after the VAE, then sweep the defaults and adapter off
  local arm=$1 seed=$2 run=$out/$1-s$2
  local -a extra
  read -r -a extra <<< "$(arm_overrides "$arm")"
  mkdir -p "$run"
  [[ -e $run/vae ]] || cp -r "$out/shared/vae" "$run/vae"
  if [[ ${THREADS:-} || $parallel -gt 1 ]]; then export OMP_NUM_THREADS=${THREADS:-1}; fi
  $diffcxr train all -c "$config" --data "phantom:$out/phantoms" --output-dir "$run" --resume --no-progress \
    "seed=$seed" ${extra[@]+"${extra[@]}"} ${train_overrides[@]+"${train_overrides[@]}"} > "$run.log" 2>&1 \
    || { echo "[ablation] $arm seed $seed: training failed, see $run.log" >&2; return 1; }
  [[ -f $out/sweep-$arm-s$seed/sweep.json ]] || $python "$here/adherence_sweep.py" --model "$run/pipeline" \
    --classifier "$yardstick" --data "phantom:$out/phantoms-eval" --n-reports 200 --images-per-report 1 \
    --steps 25 --guidance 4 --adapter-scale 2,0 --out "$out/sweep-$arm-s$seed" ${sweep_args[@]+"${sweep_args[@]}"} \
    > "$out/sweep-$arm-s$seed.log" 2>&1 \
    || { echo "[ablation] $arm seed $seed: sweep failed, see $out/sweep-$arm-s$seed.log" >&2; return 1; }
  echo "[ablation] $arm seed $seed: $(grep -h 'all: done' "$run.log" || true)"
}
jobs_running=0
for arm in "${arms[@]}"; do
  for seed in "${seeds[@]}"; do
    echo "[ablation] $arm seed $seed (log: $out/$arm-s$seed.log)"
    run_arm_seed "$arm" "$seed" &
    jobs_running=$((jobs_running + 1))
    if (( jobs_running >= parallel )); then wait -n; jobs_running=$((jobs_running - 1)); fi
  done
done
while (( jobs_running > 0 )); do wait -n; jobs_running=$((jobs_running - 1)); done

run_laterality() {  # run_laterality SEED: every arm of one training seed, as written and side-swapped
  local seed=$1 arm
  local -a models=() baseline=()
  for arm in "${arms[@]}"; do models+=(--model "$arm=$out/$arm-s$seed/pipeline"); done
  [[ " ${arms[*]} " == *" default "* && ${#arms[@]} -gt 1 ]] && baseline=(--baseline default)
  if [[ ${THREADS:-} || $parallel -gt 1 ]]; then export OMP_NUM_THREADS=${THREADS:-1}; fi
  [[ -f $out/laterality-s$seed/laterality.json ]] || $python "$here/laterality_adherence.py" "${models[@]}" \
    ${baseline[@]+"${baseline[@]}"} --classifier "$yardstick" --data "phantom:$out/phantoms-lat" --n-reports 100 \
    --steps 25 --out "$out/laterality-s$seed" ${laterality_args[@]+"${laterality_args[@]}"} \
    > "$out/laterality-s$seed.log" 2>&1 \
    || { echo "[ablation] laterality seed $seed failed, see $out/laterality-s$seed.log" >&2; return 1; }
  echo "[ablation] laterality seed $seed: $out/laterality-s$seed/laterality.json"
}
if [[ $laterality == 1 ]]; then
  [[ -f $out/phantoms-lat/metadata.csv ]] || $diffcxr phantom --n "${N_LAT:-1500}" --size "$size" --seed 2 \
    --out "$out/phantoms-lat" --no-progress > "$out/phantoms-lat.log"
  for seed in "${seeds[@]}"; do
    run_laterality "$seed" &
    jobs_running=$((jobs_running + 1))
    if (( jobs_running >= parallel )); then wait -n; jobs_running=$((jobs_running - 1)); fi
  done
  while (( jobs_running > 0 )); do wait -n; jobs_running=$((jobs_running - 1)); done
fi

sweeps() {  # sweeps ARM: the --seed-table arguments of one arm
  local seed
  for seed in "${seeds[@]}"; do printf 's%s=%s ' "$seed" "$out/sweep-$1-s$seed/sweep.json"; done
}
{
  echo "## Report adherence by arm ($config, seeds ${seeds[*]}, $(date -u +%F), $(uname -m), $(nproc) CPU cores)"
  read -r -a default_sweeps <<< "$(sweeps default)"
  for arm in "${arms[@]}"; do
    read -r -a arm_sweeps <<< "$(sweeps "$arm")"
    echo; echo "### $arm"
    $python "$here/adherence_sweep.py" --seed-table "${arm_sweeps[@]}"
    if [[ $arm != default && " ${arms[*]} " == *" default "* ]]; then  # "this arm" = default, "baseline" = $arm
      echo; echo "#### default against $arm"
      $python "$here/adherence_sweep.py" --seed-table "${default_sweeps[@]}" --baseline "${arm_sweeps[@]}" \
        | sed -n '/against the baseline/,$p'
      for seed in "${seeds[@]}"; do  # per seed, paired on the same reports and noise (the sweeps' saved scores)
        echo; echo "#### default − $arm, seed $seed, paired run for run"; echo
        $python "$here/adherence_sweep.py" --paired "$out/sweep-default-s$seed/sweep.json" \
          "$out/sweep-$arm-s$seed/sweep.json" | sed -n '/^|/p'
      done
    fi
  done
  if [[ $laterality == 1 ]]; then
    echo; echo "## Laterality by arm (flip rate: the finding moved with the side word)"; echo
    runs=(); for seed in "${seeds[@]}"; do runs+=("s$seed=$out/laterality-s$seed/laterality.json"); done
    $python "$here/laterality_adherence.py" --seed-table "${runs[@]}"
  fi
} | tee "$out/table.md"
