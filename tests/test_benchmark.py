"""The benchmark script keeps working (its numbers are for the README, not asserted here), run as a user runs
it, with ComfyUI found only through COMFYUI_PATH (an empty home, so no ~/ComfyUI)."""

import json
import os
import subprocess
import sys

import pytest

import host

pytestmark = pytest.mark.host


def run_script(tmp_path, name, *args):
    env = {**os.environ, "HOME": str(tmp_path), "COMFYUI_PATH": str(host.find_comfyui())}
    done = subprocess.run([sys.executable, str(host.REPO / "benchmarks" / name), *args],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return done


def test_overhead_benchmark_runs_and_reports(tmp_path):
    done = run_script(tmp_path, "overhead.py", "--preset", "tiny", "--concepts", "3", "--threads", "1")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["concepts"] == 3 and result["seconds_patched"] > 0 and result["time_ratio"] > 0
    assert result["from_image_seconds"] > 0 and result["median_cpu_time_ratio"] > 0


def test_table_runs_each_preset_and_prints_its_row(tmp_path):
    out = tmp_path / "results.jsonl"
    done = run_script(tmp_path, "table.py", "--presets", "tiny,no-such", "--repeats", "1", "--threads", "1",
                      "--out", str(out))
    assert [json.loads(line)["preset"] for line in out.read_text().splitlines()] == ["tiny"]
    assert "no-such: failed" in done.stderr  # a failing preset is reported, and the others still run
    rows = [line for line in done.stdout.splitlines() if line.startswith("| tiny | cpu (1 threads) | 64px, 2 steps |")]
    assert len(rows) == 2  # as measured, then in the table
