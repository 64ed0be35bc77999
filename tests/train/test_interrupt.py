"""Ctrl-C in `capfleet train` says where it stopped and how to go on (issue 8)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time


def test_ctrl_c_names_the_step_and_how_to_resume(shapes_dir, tmp_path):
    out = tmp_path / "model"
    command = [sys.executable, "-m", "capfleet.train", str(shapes_dir), "-o", str(out), "--image-size", "32"]
    command += ["--batch-size", "4", "--max-steps", "100000", "--save-every", "2", "--num-threads", "1"]
    command += ["--no-progress", "--no-plot"]
    process = subprocess.Popen(
        command,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # a background shell ignores SIGINT
    )
    deadline = time.time() + 120
    checkpoints = out / "checkpoints"
    while time.time() < deadline and process.poll() is None and not list(checkpoints.glob("step-*/trainer_state.pt")):
        time.sleep(0.1)
    assert process.poll() is None, process.communicate()
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    match = re.search(r"interrupted after step (\d+): rerun the same command to resume from step (\d+)", stderr)
    assert match, stderr
    assert int(match.group(1)) >= int(match.group(2)) >= 2
