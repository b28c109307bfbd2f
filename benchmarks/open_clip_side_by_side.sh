#!/usr/bin/env bash
# bigvl side by side with open_clip on this machine's CPU (train step + input pipeline).
#
#   bash bigvl/benchmarks/open_clip_side_by_side.sh [VENV_DIR] [open_clip_compare args ...]
#
# Creates VENV_DIR (default /tmp/bigvl_open_clip_venv) with torch + open_clip_torch unless it
# exists (torch stays out of bigvl's own dependencies), then runs
# `python -m benchmarks.open_clip_compare --python VENV_DIR/bin/python ARGS` with the
# current python (which has bigvl installed). Default ARGS: the small S64 CLIP at batch 64.
# Torch comes from the CPU wheel index when it is reachable, else from the default registry.
set -euo pipefail

venv="${1:-/tmp/bigvl_open_clip_venv}"
shift || true
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "${here}/.." && pwd)"

if [[ ! -x "${venv}/bin/python" ]]; then
  python -m venv "${venv}"
  if curl -sfI --max-time 10 https://download.pytorch.org/whl/cpu/ > /dev/null; then
    "${venv}/bin/pip" install -q torch torchvision --index-url https://download.pytorch.org/whl/cpu
  fi
  "${venv}/bin/pip" install -q open_clip_torch torchvision
fi
"${venv}/bin/python" -c 'import torch, open_clip; print("torch", torch.__version__, "open_clip", open_clip.__version__)'

cd "${repo}"
if [[ $# -eq 0 ]]; then
  set -- --arch S64 --batch 64 --steps 5
fi
python -m benchmarks.open_clip_compare --python "${venv}/bin/python" "$@"
