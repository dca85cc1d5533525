"""Start a real ComfyUI server (`main.py --cpu`) on 127.0.0.1 with this pack in a temporary base directory.

The base directory (`--base-directory`) holds custom_nodes/comfyui-concept-attention (a symlink to this repo
or a `git clone` of it), optionally the test-only loaders of tests/tiny_loaders (tiny random models in place of
the model files), empty model files with the names the example workflows use, input/example.png and
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
import typing
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


TINY_LOADERS_DIR = Path(__file__).resolve().parent / "tiny_loaders"
# The example workflows' loaders -> tests/tiny_loaders' node giving the same type (the Flux workflows' set).
TINY_LOADERS = {"UNETLoader": "CATestTinyUNETLoader", "DualCLIPLoader": "CATestTinyDualCLIPLoader",
                "VAELoader": "CATestTinyVAELoader"}


class Server(typing.NamedTuple):
    url: str
    log_path: Path
    pid: int


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare_base_dir(base: Path, pack_source: str = "symlink", tiny_loaders: bool = False) -> Path:
    """Lay out a ComfyUI base directory; returns the pack's folder in it. pack_source: 'symlink' (this working
    tree) or 'clone' (`git clone` of this repo's HEAD, i.e. what a user's git-clone install gets).
    tiny_loaders: also install tests/tiny_loaders (see TINY_LOADERS)."""
    pack = base / "custom_nodes" / wt.PACK_DIR_NAME
    pack.parent.mkdir(parents=True)
    if tiny_loaders:
        os.symlink(TINY_LOADERS_DIR, base / "custom_nodes" / "ca-test-tiny-loaders")
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


def post_json(url: str, payload: dict, timeout: float = 30.0) -> tuple[int, dict]:
    """(HTTP status, decoded JSON body or {}); error statuses are returned, not raised."""
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, body = error.code, error.read()
    try:
        return status, json.loads(body) if body else {}
    except json.JSONDecodeError:
        return status, {}


class ObjectInfoNode:
    """A node class as the frontend sees it (from /object_info), for workflow_tools."""

    def __init__(self, info):
        self.info = info
        self.RETURN_TYPES = info["output"]
        self.RETURN_NAMES = info.get("output_name") or info["output"]
        self.OUTPUT_NODE = info.get("output_node", False)

    def INPUT_TYPES(self):  # noqa: N802 (ComfyUI's name)
        result = {}
        for category in ("required", "optional"):
            section = self.info["input"].get(category, {})
            order = self.info.get("input_order", {}).get(category, list(section))
            result[category] = {name: section[name] for name in order}
        return result


def object_info_classes(url: str) -> dict[str, ObjectInfoNode]:
    return {k: ObjectInfoNode(v) for k, v in get_json(url + "/object_info", timeout=60).items()}


@contextlib.contextmanager
def running_comfyui(base: Path):
    """Yields (base_url, log_path) of a ComfyUI server running on `base`; always stops it."""
    with comfyui_server(base) as server:
        yield server.url, server.log_path


@contextlib.contextmanager
def comfyui_server(base: Path):
    """Yields the Server (url, log path, process id) running on `base`; always stops it."""
    import host

    root = host.find_comfyui()
    port = free_port()
    log_path = base / "comfyui.log"
    cmd = [sys.executable, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port),
           "--base-directory", str(base), "--disable-api-nodes", "--disable-auto-launch",
           "--database-url", "sqlite:///:memory:"]
    # One thread: the tiny test models gain nothing from more, and on a shared, busy CPU OpenMP's waiting
    # threads make each sampling step over ten times slower.
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
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
        yield Server(url, log_path, proc.pid)
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
