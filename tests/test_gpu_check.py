"""benchmarks/gpu_check.sh is run once per lent GPU, with no time to debug it there: checked here for
syntax and by its CPU dry run (tiny models, every step), with helper processes for capfleet's rows."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.sh"


def test_the_gpu_check_parses():
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True).returncode == 0


@pytest.mark.slow  # builds tiny models and runs every step on the CPU: a minute or two on 2 cores
def test_the_gpu_check_dry_run_reports_every_figure(tmp_path):
    env = {
        **os.environ,
        "DRY_RUN": "1",
        "PYTHON": sys.executable,
        "OUT": str(tmp_path / "out"),
        "WORK": str(tmp_path / "work"),
        "MODEL_PROCESSES": "2",
    }
    run = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=1200)
    assert run.returncode == 0, run.stderr[-2000:]
    for status in ("bench_pipeline exit status: 0", "caption exit status: 0", "bench exit status: 0"):
        assert status in run.stdout, run.stdout[-3000:]
    summary = run.stdout.split("=== summary", 1)[1]
    assert "capfleet / best batched baseline = " in summary
    assert "batch size" in summary.lower()
    bench = (tmp_path / "out" / "bench_pipeline.txt").read_text()
    assert "capfleet (fast): 2 processes" in bench  # --model-processes reached capfleet's rows
    assert not (tmp_path / "work").exists()  # the work folder is removed unless KEEP_WORK=1
