#!/usr/bin/env bash
# Creates (once) the Python environment the tests run in, and prints its folder (last line): the pinned torch
# trio, the requirements of the ComfyUI the tests run against (COMFYUI_PATH, else the one .ci/setup_host.sh
# finds or unpacks; installed again when that requirements.txt changes), pytest and h5py.
# The venv is $CA_VENV, else ~/.venvs/comfyui-ca.
set -euo pipefail
VENV="${CA_VENV:-$HOME/.venvs/comfyui-ca}"
COMFY="${COMFYUI_PATH:-$(bash "$(dirname "$0")/setup_host.sh" | tail -n 1)}"
if [ ! -f "$COMFY/requirements.txt" ]; then
  echo "no requirements.txt in the ComfyUI at $COMFY" >&2
  exit 1
fi
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import torch, torchsde, pytest" 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip >&2
  "$VENV/bin/pip" install -q torch==2.11.0 torchvision==0.26.0 torchaudio==2.11.0 >&2
  "$VENV/bin/pip" install -q torchsde pytest >&2
fi
# ComfyUI's requirements, torch excepted (pinned above); the marker remembers which file was installed.
MARKER="$VENV/.comfyui-requirements.sha256"
WANTED="$(sha256sum "$COMFY/requirements.txt" | cut -d' ' -f1)"
if [ "$(cat "$MARKER" 2>/dev/null)" != "$WANTED" ]; then
  REQUIREMENTS="$(mktemp)"
  grep -vE '^(torch|torchvision|torchaudio)\s*$' "$COMFY/requirements.txt" > "$REQUIREMENTS"
  "$VENV/bin/pip" install -q -r "$REQUIREMENTS" >&2
  rm -f "$REQUIREMENTS"
  echo "$WANTED" > "$MARKER"
fi
# h5py reads ImageNet-Segmentation's MATLAB v7.3 file in the evaluation tests.
"$VENV/bin/python" -c "import h5py" 2>/dev/null || "$VENV/bin/pip" install -q h5py >&2
echo "$VENV"
