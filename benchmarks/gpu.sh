#!/usr/bin/env bash
# The prepared GPU run (benchmarks/gpu.py): GPU-marked tests, DETR and Whisper at full batches,
# the three workloads, and a RESULTS.md section, in under 8 minutes on one CUDA device.
#   bash benchmarks/gpu.sh --dry-run     # the plan, on any machine
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python
exec "$PY" -m benchmarks.gpu "$@"
