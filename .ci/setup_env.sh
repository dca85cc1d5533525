#!/usr/bin/env bash
# Creates (once) the Python environment the tests run in: ComfyUI's requirements
# plus the pinned torch trio. ComfyUI itself is found via COMFYUI_PATH or ~/ComfyUI.
set -euo pipefail
VENV="${CA_VENV:-$HOME/.venvs/comfyui-ca}"
COMFY="${COMFYUI_PATH:-$HOME/ComfyUI}"
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import torch, torchsde, pytest" 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q torch==2.11.0 torchvision==0.26.0 torchaudio==2.11.0
  if [ -f "$COMFY/requirements.txt" ]; then
    grep -vE '^(torch|torchvision|torchaudio)\s*$' "$COMFY/requirements.txt" > /tmp/ca-comfy-req.txt
    "$VENV/bin/pip" install -q -r /tmp/ca-comfy-req.txt
  fi
  "$VENV/bin/pip" install -q torchsde pytest
fi
# h5py reads ImageNet-Segmentation's MATLAB v7.3 file in the evaluation tests.
"$VENV/bin/python" -c "import h5py" 2>/dev/null || "$VENV/bin/pip" install -q h5py >&2
echo "$VENV"
