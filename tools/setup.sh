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
# build the fused C++/OpenMP kernels now (about a minute, once; cached in ~/.cache/vision3d_kd) rather than
# inside the first command that renders; a machine without g++ gets the plain-PyTorch twins instead
.venv/bin/python -c "from vision3d_kd.kernels import fused_available; fused_available()" \
  || echo "setup: the fused kernels did not build; the plain-PyTorch twins will run" >&2
# --test: also Ray (the optional engine of `v3kd batch`, so its test runs) and the other programs the tests open our exports with (gltf-validator, three.js,
# GaussianSplats3D, splat-transform; npm, into tools/clients/node_modules). Without node/npm the tests
# that need them skip with a reason.
if [ "${1:-}" = "--test" ]; then
  .venv/bin/pip install -q -e ".[dev,ray]" || echo "setup: Ray not installed; the batch test on Ray will skip" >&2
fi
if [ "${1:-}" = "--test" ] && command -v npm >/dev/null; then
  (cd tools/clients && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error >/dev/null) \
    || echo "setup: npm clients not installed; the tests that open exports in them will skip" >&2
fi
