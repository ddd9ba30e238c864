#!/usr/bin/env bash
# The GPU checks of issue 20 in one command, on a machine with one CUDA GPU (about 5-8 minutes).
# Prints one table and writes it to gpu_check.md; commit it to bench/README or the bench chapter with the device name.
# Without a GPU: `python bench/gpu_check.py --smoke` runs the same plumbing on a CPU at toy sizes.
set -euo pipefail
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || { echo "gpu_check: no NVIDIA GPU (nvidia-smi failed)"; exit 2; }
timeout 900 python bench/gpu_check.py --out gpu_check.md "$@"
