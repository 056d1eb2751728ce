"""bench/bench_dgnam.py --json gives, on every device, the fields that answer the GPU goals: the live
(progress-reporting) single-unit time, whether a CUDA graph was captured, and the batch size chosen."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import ROOT
from dgnam_engine import accel as A


def test_bench_json_reports_the_live_unit_the_graph_and_the_batch_size():
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_dgnam.py"), "--device", "cpu", "--steps", "2",
                          "--batch", "2", "--batch-steps", "1", "--threads", "1", "--json"],
                         capture_output=True, text=True, timeout=300, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["device"] == "cpu" and result["model"] == "alexnet" and result["layer"] == "fc8"
    assert result["live_unit_seconds"] > 0 and len(result["live_runs"]) == 1
    assert result["graph_captured"] is False  # no CUDA graph on a CPU
    assert result["batch_size"] == A.CPU_BATCH  # 1000 units, a CPU: the fixed batch
    assert "live unit (progress, preview every 5)" in out.stderr and "auto batch size: 16" in out.stderr
    # the thread count asked for is the one every pass used, and the limit figures come with it
    assert result["optimized_threads"] == 1 and result["threads"] == 1
    assert result["step_gflop"] > 1 and 0 < result["limit_fraction"] and result["peak_gflops_per_second"] > 0
