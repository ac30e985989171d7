#!/usr/bin/env bash
# The main job: set-up included (see scripts/bootstrap.sh), then a scripted-expert rollout on drawer-open that
# saves its goal image and prints the step of first success.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/bootstrap.sh
furl goal-image drawer-open --seed 0 --out runs/demo/drawer-open-seed0-goal.png
