#!/usr/bin/env bash
# Create .venv with the CPU build of PyTorch and install vision3d_kd (+ dev tools) in editable mode.
# Installing torch==2.13.0 first keeps pip from pulling a multi-GB CUDA build for the "torch>=2.1"
# requirement on CPU machines. Set V3KD_TORCH to choose another torch requirement (e.g. a CUDA one).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  .venv/bin/pip install -q "${V3KD_TORCH:-torch==2.13.0}"
fi
.venv/bin/pip install -q -e ".[dev]"
