#!/usr/bin/env bash
# The GPU check in one call, from a bare machine (benchmarks/README.md, "The GPU check"):
#
#   bash benchmarks/gpu_check.sh [--wheels DIR] [--no-install] [gpu_check.py options]
#
# Sets up .venv-gpu (torch and the package's dependencies from DIR with --wheels, offline; else
# from the package index), then runs benchmarks/gpu_check.py (default --device cuda) under an
# 8-minute limit. Writes benchmarks/results/gpu_check/gpu_check.{json,txt} (or --out-dir).
# --no-install uses the Python already on PATH (what the CPU smoke test does:
#   bash benchmarks/gpu_check.sh --no-install --device cpu --tiny --out-dir /tmp/gc).
set -euo pipefail
cd "$(dirname "$0")/.."
wheels="" install=1 args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --wheels) wheels="$2"; shift 2 ;;
    --no-install) install=0; shift ;;
    *) args+=("$1"); shift ;;
  esac
done
python=python3
if [ "$install" = 1 ]; then
  python3 -m venv .venv-gpu
  python=.venv-gpu/bin/python
  if [ -n "$wheels" ]; then
    [ -d "$wheels" ] || { echo "gpu_check.sh: --wheels $wheels is not a directory" >&2; exit 2; }
    "$python" -m pip install --quiet --no-index --find-links "$wheels" torch
    "$python" -m pip install --quiet --no-index --find-links "$wheels" -e .
  else
    "$python" -m pip install --quiet -e .   # torch as installed on this machine's index (a CUDA build)
  fi
fi
has_device=0
for a in "${args[@]+"${args[@]}"}"; do [ "$a" = "--device" ] && has_device=1; done
[ "$has_device" = 1 ] || args+=(--device cuda)
exec timeout 480 "$python" benchmarks/gpu_check.py "${args[@]}"
