"""The same seed and settings give the same rows on every runner: local, --gpus 2 (two worker
processes, on CPU here), Apache Beam's Direct runner, a task array of two tasks and Ray on a
two-node local cluster (float32, so no score moves with its batch)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from capfleet.cli import app
from tests.pipeline.helpers import read_rows
from tests.runners.conftest import ENV, WAIT_S

runner = CliRunner()
SETTINGS = ["--captioner", "builtin", "--scorer", "builtin", "--candidates", "3", "--max-new-tokens", "10"]
SETTINGS += ["--shard-size", "3", "--dtype", "float32", "--device", "cpu", "--seed", "7", "--no-progress"]
# A runner's name -> the commands (extra flags) that caption the whole run. A new runner (ray) is one entry.
RUNNERS = {
    "gpus": [["--gpus", "2"]],
    "beam": [["--runner", "beam", "--direct_num_workers", "1"]],
    "task array": [["--task-index", str(index), "--task-count", "2"] for index in range(2)],
    "ray": [["--runner", "ray", "--ray-workers", "2", "--ray-address", "{ray}"]],
}


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("same-rows") / "scenes"
    assert runner.invoke(app, ["synth", "8", "-o", str(folder), "--size", "64"]).exit_code == 0
    return folder


@pytest.fixture(scope="module")
def local_rows(scenes, tmp_path_factory) -> list[tuple]:
    out = tmp_path_factory.mktemp("same-rows") / "local"
    result = runner.invoke(app, ["caption", str(scenes), "-o", str(out), *SETTINGS])
    assert result.exit_code == 0, result.output
    return _rows(out)


def _rows(out: Path) -> list[tuple]:
    return [(r["key"], r["text"], r["candidates"], r["scores"]) for r in sorted(read_rows(out), key=lambda r: r["key"])]


@pytest.mark.slow  # the --gpus case spawns two worker processes that each import torch
@pytest.mark.parametrize("name", list(RUNNERS))
def test_every_runner_writes_the_local_runners_rows(scenes, local_rows, tmp_path, request, name):
    out = tmp_path / name.replace(" ", "-")
    for extra in RUNNERS[name]:
        if name == "ray":  # its own process: the launcher joins the cluster, then leaves it
            address = request.getfixturevalue("ray_cluster")
            command = [sys.executable, "-m", "capfleet.cli", "caption", str(scenes), "-o", str(out), *SETTINGS]
            ran = subprocess.run([*command, *(arg.format(ray=address) for arg in extra)], env=ENV,
                                 capture_output=True, text=True, timeout=WAIT_S)  # fmt: skip
            assert ran.returncode == 0 and "Ray: 2 shard actors" in ran.stderr, ran.stderr
            continue
        result = runner.invoke(app, ["caption", str(scenes), "-o", str(out), *SETTINGS, *extra])
        assert result.exit_code == 0, result.output
    assert len(local_rows) == 8 and _rows(out) == local_rows
