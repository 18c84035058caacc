#!/usr/bin/env bash
# GPU checks of the restoration, for when a CUDA machine is available: the GPU tests, then the throughput part of
# the restoration benchmark on the GPU (written to docs/benchmarks.md as section "restore_speed_cuda").
# Needs a Python environment with a CUDA build of torch and napari-skd installed; PYTHON selects it.
#
#     PYTHON=.venv/bin/python bash benchmarks/gpu_check.sh       # about 3 minutes
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
if [[ "$PY" == */* ]]; then PY=$(realpath "$PY"); fi
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
"$PY" -c "import torch, sys; ok = torch.cuda.is_available(); print('torch', torch.__version__, 'cuda', ok); sys.exit(0 if ok else 3)"
"$PY" -m pytest -q -k cuda tests/restoration/test_restore.py tests/test_device.py
cd benchmarks
timeout 600 "$PY" restore_speed.py --device cuda --parts throughput
