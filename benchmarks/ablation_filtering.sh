#!/usr/bin/env bash
# Ablation "no filtering": does latent noise filtering help the diffusion model?
#
# The same 5,000 phantoms as runs/phantoms5k with 10 % of them corrupted (diffcxr phantom --noise-fraction 0.1:
# inverted, lateral, blank, cropped, rotated, over/under-exposed, text overlays, non-chest images, mismatched
# reports). Stage 1 + 2 (base U-ViT, knowledge adapter) are trained twice with the cpu-mini config, starting from
# the VAE, report encoder and classifier of a finished cpu-mini run: on every image ("unfiltered") and on the
# images `diffcxr filter` keeps with its default budget ("filtered"). Both are evaluated on the clean held-out
# test reports and images with benchmarks/eval_trained_model.py (--variants full).
#
#   bash benchmarks/ablation_filtering.sh runs/cpu-mini runs/ablation-filtering [runs/phantoms5k]
#
# Environment: DIFFCXR (command, default `diffcxr`), PYTHON (default `python`), PARALLEL=1 trains the two arms
# at the same time (for a GPU; on a 2-core CPU leave it unset: about 1 h per arm, sequentially). For a smoke run:
# N=200 TRAIN_OVERRIDES="base.max_steps=20 adapter.max_steps=10" EVAL_ARGS="--n-reports 4 --steps 3".
set -euo pipefail
base_run=${1:?usage: ablation_filtering.sh CPU_MINI_RUN OUT_DIR [CLEAN_PHANTOMS]}
out=${2:?usage: ablation_filtering.sh CPU_MINI_RUN OUT_DIR [CLEAN_PHANTOMS]}
clean=${3:-runs/phantoms5k}
diffcxr=${DIFFCXR:-diffcxr}
python=${PYTHON:-python}
n=${N:-5000}
read -r -a train_overrides <<< "${TRAIN_OVERRIDES:-}"
read -r -a eval_args <<< "${EVAL_ARGS:-}"
here=$(cd "$(dirname "$0")" && pwd)

for stage in vae vlm classifier; do
  [[ -f $base_run/$stage/COMPLETE.json ]] || { echo "error: $base_run/$stage is not a finished stage (train cpu-mini first)" >&2; exit 2; }
done
mkdir -p "$out"
[[ -f $clean/metadata.csv ]] || $diffcxr phantom --n "$n" --size 64 --out "$clean" --no-progress > "$out/phantoms-clean.log" &
[[ -f $out/phantoms-noisy/metadata.csv ]] || $diffcxr phantom --n "$n" --size 64 --noise-fraction 0.1 \
  --out "$out/phantoms-noisy" --no-progress > "$out/phantoms-noisy.log"
wait
[[ -f $out/filter/manifest.csv ]] || $diffcxr filter --data "phantom:$out/phantoms-noisy" --vae "$base_run/vae/vae" \
  --out "$out/filter" --no-progress > "$out/filter.log"
tail -n 3 "$out/filter.log"

run_arm() {  # run_arm NAME [--manifest FILE]: train stages 1 + 2 (and export the pipeline), then evaluate
  local arm=$1; shift
  mkdir -p "$out/$arm"
  for stage in vae vlm classifier; do
    [[ -e $out/$arm/$stage ]] || cp -r "$base_run/$stage" "$out/$arm/$stage"
  done
  $diffcxr train all -c cpu-mini --data "phantom:$out/phantoms-noisy" --output-dir "$out/$arm" --resume --no-progress \
    "$@" ${train_overrides[@]+"${train_overrides[@]}"} > "$out/$arm.log" 2>&1
  $python "$here/eval_trained_model.py" --model "$out/$arm/pipeline" --data "phantom:$clean" \
    --classifier "$base_run/classifier" --out "$out/eval-$arm" --variants full ${eval_args[@]+"${eval_args[@]}"} \
    > "$out/eval-$arm.log" 2>&1
}
if [[ ${PARALLEL:-0} == 1 ]]; then
  run_arm unfiltered & pid=$!
  run_arm filtered --manifest "$out/filter/manifest.csv"
  wait $pid
else
  run_arm unfiltered
  run_arm filtered --manifest "$out/filter/manifest.csv"
fi
for arm in unfiltered filtered; do
  echo "== $arm: $(grep -h 'all: done' "$out/$arm.log")"
  tail -n 4 "$out/eval-$arm.log"
done
