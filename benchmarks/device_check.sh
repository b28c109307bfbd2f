#!/usr/bin/env bash
# The device check: B/16 CLIP bf16 train step (step time, pairs/s, MFU at the largest batch
# that fits), tiled vs plain softmax loss, KV-cached decoding; one JSON line on stdout.
# Sized for <= 8 minutes on one GPU; --cpu runs the reduced sizes (what the tests run).
#
# Usage: benchmarks/device_check.sh [--cpu] [--budget-s SECONDS]
#
# On a GPU it sets the XLA flags recommended for GPUs (JAX's GPU performance tips and the
# NVIDIA JAX-Toolbox): the latency-hiding scheduler, which overlaps collectives with compute.
# Flags already in XLA_FLAGS are kept. See benchmarks/device_check.py.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [[ " $* " != *" --cpu "* ]]; then
  export XLA_FLAGS="${XLA_FLAGS:-} --xla_gpu_enable_latency_hiding_scheduler=true"
  export XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.95}"
else
  export JAX_PLATFORMS=cpu
fi
exec python -m benchmarks.device_check "$@"
