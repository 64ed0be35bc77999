"""Ctrl-C in `capfleet synth` says how to finish, and the rerun does (issue 8)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time


def _synth(out) -> list[str]:
    command = [sys.executable, "-m", "capfleet.cli", "synth", "6000", "-o", str(out)]
    return [*command, "--size", "32", "--shard-size", "500"]


def test_ctrl_c_says_rerun_and_the_rerun_finishes(tmp_path):
    out = tmp_path / "scenes"
    process = subprocess.Popen(
        _synth(out),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # a background shell ignores SIGINT
    )
    deadline = time.time() + 60
    while time.time() < deadline and process.poll() is None and not (out / "00000").is_dir():
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130 and "Traceback" not in stderr
    assert "interrupted: rerun the same command to finish" in stderr
    rerun = subprocess.run(_synth(out), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert "wrote 6000 scenes in 12 shards" in rerun.stdout
