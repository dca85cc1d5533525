"""The benchmark script keeps working (its numbers are for the README, not asserted here), run as a user runs
it, with ComfyUI found only through COMFYUI_PATH (an empty home, so no ~/ComfyUI)."""

import json
import os
import subprocess
import sys

import pytest

import host

pytestmark = pytest.mark.host


def test_overhead_benchmark_runs_and_reports(tmp_path):
    env = {**os.environ, "HOME": str(tmp_path), "COMFYUI_PATH": str(host.find_comfyui())}
    script = host.REPO / "benchmarks" / "overhead.py"
    done = subprocess.run([sys.executable, str(script), "--preset", "tiny", "--concepts", "3", "--threads", "1"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["concepts"] == 3 and result["seconds_patched"] > 0 and result["time_ratio"] > 0
    assert result["from_image_seconds"] > 0
