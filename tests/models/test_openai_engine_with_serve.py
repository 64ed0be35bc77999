"""--engine openai against `capfleet serve` (issue 11) started on 127.0.0.1 by the test."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from capfleet.cli import app
from tests.pipeline.helpers import read_errors, read_rows

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("capfleet.serve") is None, reason="needs capfleet serve (issue 11)"
)
ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def served_builtin(tmp_path_factory):
    """`capfleet serve --captioner builtin --scorer builtin` in a subprocess; yields its /v1 URL."""
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "capfleet.cli", "serve", "--captioner", "builtin", "--scorer", "builtin"]
    log_path = tmp_path_factory.mktemp("serve") / "serve.log"
    log_file = open(log_path, "wb")  # a file, not a pipe: a chatty server never blocks on it
    server = subprocess.Popen([*command, "--port", str(port)], env=env, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if server.poll() is not None:
                pytest.fail(f"capfleet serve exited: {log_path.read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.3)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.terminate()
        server.wait(timeout=30)
        log_file.close()


def test_a_run_through_capfleet_serve(tmp_path, served_builtin):
    runner = CliRunner()
    assert runner.invoke(app, ["synth", "6", "-o", str(tmp_path / "scenes"), "--size", "64"]).exit_code == 0
    out = tmp_path / "out"
    args = ["caption", str(tmp_path / "scenes"), "-o", str(out), "--engine", "openai", "--api-base", served_builtin]
    args += ["--captioner", "builtin", "--scorer", "builtin", "--candidates", "3", "--no-progress"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = read_rows(out)
    assert len(rows) == 6 and read_errors(out) == []
    for row in rows:
        assert 1 <= len(row["candidates"]) <= 3 and len(row["scores"]) == len(row["candidates"])
        assert row["text"] in row["candidates"] and row["flags"] == ""
        assert row["chunked"] == [False] * len(row["scores"])
        assert any(shape in row["text"] for shape in ("circle", "square", "triangle", "star"))
