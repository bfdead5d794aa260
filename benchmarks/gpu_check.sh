#!/usr/bin/env bash
# The GPU path, where a CUDA device is present: the CUDA tests (required, not skipped), the
# ensemble benchmark on the GPU beside the CPU's, and the per-model throughput that replaces the
# projected GPU rows of docs/scaling.md (results/throughput_cuda.json; scaling_model.py then
# prints the measured table). Figures go to benchmarks/results/ and the log.
# Usage: benchmarks/gpu_check.sh   (after `make test`'s setup; `make ray` for the Ray tests)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device: nothing to check')"
"$PY" -c "import torch; print('GPU:', torch.cuda.get_device_name(0), '| torch', torch.__version__)"
PRIVLAB_REQUIRE_CUDA=1 "$PY" -m pytest -q tests/test_gpu_path.py tests/attacks/gradient_inversion/test_gi_device.py
"$PY" benchmarks/bench_ensemble_training.py --device cuda --models 64
"$PY" benchmarks/bench_throughput.py --device cuda
"$PY" benchmarks/scaling_model.py
