#!/usr/bin/env bash
# The stain experiment on the demo data: no stain handling, HED jitter in training, Macenko normalisation, each
# fitted and tested for every seed (--seed_everything S --data.seed S: the split changes with the seed), then
# scored under stain shifts of growing strength, best and last checkpoints.
#
#   bash benchmarks/stain_experiment.sh [LOG_ROOT] [OUT]     # defaults: lightning_logs/stain, reports/stain
#   SEEDS="0 1 2 3 4" BREAKHIS=".venv/bin/breakhis" bash benchmarks/stain_experiment.sh
#
# Nine demo fits of about 1-2 min each on a 2-core CPU. Each step's log goes to OUT/logs/; a step that fails
# stops the script. Fits already made (their test/metrics.json exists) are not run again.
set -euo pipefail

LOGS=${1:-lightning_logs/stain}
OUT=${2:-reports/stain}
SEEDS=${SEEDS:-"0 1 2"}
BREAKHIS=${BREAKHIS:-breakhis}
read -r -a BH <<< "$BREAKHIS"
mkdir -p "$OUT/logs"

declare -A CONFIG=(
  [demo_nostain]="--config configs/demo.yaml --experiment demo_nostain --data.hed_scale 0 --data.hed_bias 0 --data.stain_norm none"
  [demo_hed]="--config configs/demo_hed.yaml"
  [demo_macenko]="--config configs/demo_macenko.yaml"
)

for seed in $SEEDS; do
  for name in demo_nostain demo_hed demo_macenko; do
    read -r -a args <<< "${CONFIG[$name]}"
    args+=(--seed_everything "$seed" --data.seed "$seed" --log_root "$LOGS" --trainer.enable_progress_bar false)
    done_file=$(grep -l "\"seed\": $seed," "$LOGS/$name"/version_*/run.json 2>/dev/null | head -n 1 || true)
    if [[ -n "$done_file" && -f "$(dirname "$done_file")/test/metrics.json" ]]; then
      echo "$name seed $seed: done before ($(dirname "$done_file"))"
      continue
    fi
    start=$(date +%s)
    "${BH[@]}" fit "${args[@]}" > "$OUT/logs/$name-seed$seed-fit.log" 2>&1
    "${BH[@]}" test "${args[@]}" > "$OUT/logs/$name-seed$seed-test.log" 2>&1
    echo "$name seed $seed: fit + test in $(( $(date +%s) - start )) s"
  done
done

"${BH[@]}" stain-shift "$LOGS" --out "$OUT" > "$OUT/logs/stain-shift.log" 2>&1
"${BH[@]}" stain-shift "$LOGS" --out "$OUT/last" --checkpoint last > "$OUT/logs/stain-shift-last.log" 2>&1
echo "wrote $OUT/stain_shift.md, $OUT/stain_shift.png, $OUT/last/"
