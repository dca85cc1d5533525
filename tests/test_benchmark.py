"""The benchmark script keeps working (its numbers are for the README, not asserted here)."""

import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.host


def test_overhead_benchmark_runs_and_reports():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import overhead

    result = overhead.main(["--preset", "tiny", "--concepts", "3"])
    assert result["concepts"] == 3 and result["seconds_patched"] > 0 and result["time_ratio"] > 0
    assert result["from_image_seconds"] > 0
