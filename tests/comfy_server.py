"""Start a real ComfyUI server (`main.py --cpu`) on 127.0.0.1 with this pack in a temporary base directory.

The base directory (`--base-directory`) holds custom_nodes/comfyui-concept-attention (a symlink to this repo
or a `git clone` of it), empty model files with the names the example workflows use, input/example.png and
frontend settings that skip the first-run tour. The server is always stopped (SIGTERM to its own process
group, then SIGKILL) when the context exits.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import workflow_tools as wt

START_TIMEOUT_S = 150
FRONTEND_SETTINGS = {
    "Comfy.TutorialCompleted": True,
    "Comfy.Minimap.Visible": False,
    "Comfy.Graph.CanvasInfo": False,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare_base_dir(base: Path, pack_source: str = "symlink") -> Path:
    """Lay out a ComfyUI base directory; returns the pack's folder in it. pack_source: 'symlink' (this working
    tree) or 'clone' (`git clone` of this repo's HEAD, i.e. what a user's git-clone install gets)."""
    pack = base / "custom_nodes" / wt.PACK_DIR_NAME
    pack.parent.mkdir(parents=True)
    if pack_source == "symlink":
        os.symlink(wt.REPO, pack)
    elif pack_source == "clone":
        subprocess.run(["git", "clone", "--quiet", str(wt.REPO), str(pack)], check=True, timeout=120,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    else:
        raise ValueError(pack_source)
    for folder, names in wt.MODEL_FILES.items():
        (base / "models" / folder).mkdir(parents=True)
        for name in names:
            (base / "models" / folder / name).write_bytes(b"")
    (base / "input").mkdir()
    import host

    shipped = host.find_comfyui() / "input" / "example.png"
    for name in wt.INPUT_IMAGES:
        if shipped.is_file():
            shutil.copy(shipped, base / "input" / name)
        else:
            from PIL import Image

            Image.new("RGB", (768, 768), (90, 140, 220)).save(base / "input" / name)
    (base / "user" / "default").mkdir(parents=True)
    (base / "user" / "default" / "comfy.settings.json").write_text(json.dumps(FRONTEND_SETTINGS))
    return pack


def get(url: str, timeout: float = 10.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


def get_json(url: str, timeout: float = 30.0):
    return json.loads(get(url, timeout))


@contextlib.contextmanager
def running_comfyui(base: Path):
    """Yields (base_url, log_path) of a ComfyUI server running on `base`; always stops it."""
    import host

    root = host.find_comfyui()
    port = free_port()
    log_path = base / "comfyui.log"
    cmd = [sys.executable, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port),
           "--base-directory", str(base), "--disable-api-nodes", "--disable-auto-launch",
           "--database-url", "sqlite:///:memory:"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=root, stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {proc.returncode}:\n{log_tail(log_path)}")
            try:
                get(url + "/system_stats", timeout=2)
                break
            except (urllib.error.URLError, ConnectionError, socket.timeout, OSError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"ComfyUI did not answer within {START_TIMEOUT_S}s:\n{log_tail(log_path)}")
            time.sleep(0.5)
        yield url, log_path
    finally:
        stop(proc)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)  # the server's own process group (start_new_session)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=15)


def log_tail(path: Path, chars: int = 6000) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[-chars:]
    except OSError:
        return "(no log)"
