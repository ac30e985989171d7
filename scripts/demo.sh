#!/usr/bin/env bash
# The main job: set-up included (see scripts/bootstrap.sh), then a short FuRL training run on drawer-open
# (relay + reward alignment with the goal-image stage, paper hyperparameters except a shorter warm-up) and its
# report, on the fast image path (the CPU path; --image-preset reference for the reference pipeline). Uses LIV
# from the Hugging Face hub (the paper's VLM); on a machine without hub access it falls back to the offline VLM
# shipped with the package (furl-mw-vlm) and says so at the top and bottom of its output. Extra arguments go to
# `furl train` (e.g. --steps 20000, --vlm /path/to/clip, --vlm openai/clip-vit-base-patch32).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/bootstrap.sh plots  # matplotlib for the report's PNGs
RUN="runs/demo/furl-drawer-open-$(date +%Y%m%d-%H%M%S)"
furl train --method furl --task drawer-open --seed 0 --steps 1500 --eval-freq 500 --image-preset fast \
  --hyperparams learning_starts=500 --out "$RUN" "$@"
furl report "$RUN" --out "$RUN/report"
echo "run directory: $RUN (report: $RUN/report/results.md and PNGs)"
