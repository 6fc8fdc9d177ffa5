#!/usr/bin/env bash
# The GPU check (docs/GPU_CHECK.md), for a node whose Python has torch, torchvision and timm:
#
#     scripts/gpu_check.sh OUT_DIR [--budget 480] [--wheelhouse wheelhouse] [--self-test]
#
# PYTHON names the node's interpreter (default: python3). Without CUDA it says so and runs
# its CPU self-test. Exit status 0: every phase that ran succeeded; 1: a test or phase failed.
set -euo pipefail
exec "${PYTHON:-python3}" "$(dirname "$0")/gpu_check.py" "$@"
