#!/usr/bin/env bash
# Audit a model you trained yourself, from the command line.
#
#   examples/audit_cli.sh [--quick] [OUT]       (from the repository root; OUT: runs/audit_cli)
#
# 1. examples/train_digits.py trains examples/digits_net.py:Net on 300 digits with a plain
#    PyTorch loop and writes the weights (safetensors), the data (.npz) and the recipe (YAML);
# 2. `privlab audit` audits it. With the attacker's data (--population) and the recipe
#    (--train), privlab also trains reference models for LiRA, RMIA and Shokri; --quick trains
#    for fewer epochs and leaves both out (those attacks are then skipped, with the reason).
set -euo pipefail

quick=0
if [[ "${1:-}" == "--quick" ]]; then quick=1; shift; fi
out="${1:-runs/audit_cli}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
cd "$(dirname "$0")/.."  # the repository root: the paths below are relative to it

if [[ -x .venv/bin/privlab ]]; then bin=.venv/bin/; else bin=""; fi
python="${bin}python"; [[ -n "$bin" ]] || python=python3

if (( quick )); then
    "$python" examples/train_digits.py "$out/inputs" --epochs 5
    "${bin}privlab" audit --model examples/digits_net.py:Net \
        --weights "$out/inputs/weights.safetensors" \
        --members "$out/inputs/members.npz" --nonmembers "$out/inputs/nonmembers.npz" \
        --out "$out/report"
else
    "$python" examples/train_digits.py "$out/inputs"
    "${bin}privlab" audit --model examples/digits_net.py:Net \
        --weights "$out/inputs/weights.safetensors" \
        --members "$out/inputs/members.npz" --nonmembers "$out/inputs/nonmembers.npz" \
        --population "$out/inputs/population.npz" --train "$out/inputs/recipe.yaml" \
        --out "$out/report"
fi
