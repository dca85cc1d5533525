"""Importing ComfyUI from a script (the evaluation CLIs and the demo), the way the host tests do.

ComfyUI is found from COMFYUI_PATH, else the ComfyUI whose custom_nodes folder holds this pack, else
~/ComfyUI. Inside a running ComfyUI (comfy already imported) nothing is changed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

PACK_ROOT = Path(__file__).resolve().parents[2]


def find_comfyui() -> Path | None:
    candidates = []
    if os.environ.get("COMFYUI_PATH"):
        candidates.append(Path(os.environ["COMFYUI_PATH"]))
    if PACK_ROOT.parent.name == "custom_nodes":
        candidates.append(PACK_ROOT.parent.parent)
    candidates.append(Path.home() / "ComfyUI")
    for path in candidates:
        if (path / "comfy" / "model_patcher.py").is_file() and (path / "nodes.py").is_file():
            return path.resolve()
    return None


def setup(cpu: bool | None = None) -> Path | None:
    """Put ComfyUI on sys.path (ahead of this pack, whose `nodes/` must not shadow ComfyUI's nodes.py).

    cpu: force ComfyUI onto the CPU (None: only when no CUDA/MPS device is there)."""
    if "comfy.model_management" in sys.modules:
        return None
    root = find_comfyui()
    if root is None:
        raise SystemExit("ComfyUI not found: set COMFYUI_PATH to your ComfyUI folder, or install this pack in "
                         "ComfyUI/custom_nodes, or put ComfyUI in ~/ComfyUI.")
    for path in (str(PACK_ROOT), str(root)):
        if path in sys.path:
            sys.path.remove(path)
        sys.path.insert(0, path)
    from comfy.cli_args import args

    if cpu is None:
        import torch

        cpu = not (torch.cuda.is_available() or torch.backends.mps.is_available())
    args.cpu = bool(cpu)
    import comfy.model_management  # noqa: F401  (reads args.cpu)

    return root
