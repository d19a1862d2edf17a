"""``bench/soak.py`` keeps running: it is how the driver's memory over a night is
measured, and it broke once unseen when the scheduler's records changed shape."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

SOAK = Path(__file__).resolve().parents[1] / "bench" / "soak.py"


@pytest.mark.slow
def test_soak_bench_runs_a_small_job_with_every_diagnosis(tmp_path):
    out = tmp_path / "soak.json"
    done = subprocess.run(
        [sys.executable, str(SOAK), "--videos", "4", "--frames", "4", "--warmup", "1",
         "--diagnose", "--trace", "1", "--json", str(out)],
        capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert (result["ok"], result["failed"]) == (4, 0)
    assert result["rss_end_mb"] > 0 and result["videos_per_s"] > 0
    for key in ("slope_kb_per_video", "slope_heap_kb_per_video", "slope_anon_kb_per_video"):
        assert math.isfinite(result[key]), key
    assert "resident growth by mapping" in done.stdout
    assert "tracemalloc, videos 1 -> 3" in done.stdout
    assert "by fifth of the job" in done.stdout and result["fifths"]
