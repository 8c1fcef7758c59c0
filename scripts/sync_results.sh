#!/usr/bin/env bash
# Copy finished experiments from a working --out folder into results/, without checkpoints, weights or locks:
#   scripts/sync_results.sh runs/powered learning_rate eval_mode
set -euo pipefail
src=$1; shift
for exp in "$@"; do
  (cd "$src/$exp" && find . -type f ! -name '*.pt' ! -name '.lock*' ! -name '.writers-config.yaml' ! -name '.*bnexp-tmp-*' -print0) |
    while IFS= read -r -d '' f; do
      mkdir -p "results/$exp/$(dirname "$f")"
      cp -p "$src/$exp/$f" "results/$exp/$f"
    done
done
