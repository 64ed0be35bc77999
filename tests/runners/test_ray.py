"""--runner ray on a real local Ray cluster started here: a head and a second node, as `ray start` makes them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.http_server import serve_folder
from tests.image_zoo import write_noise_images
from tests.pipeline.helpers import read_rows

RAY = Path(sys.executable).parent / "ray"
ENV = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": "1"}
WAIT_S = 300  # only a broken build waits this long


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    pytest.importorskip("ray")
    port, temp = _free_port(), tmp_path_factory.mktemp("ray")
    common = ["--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--disable-usage-stats"]
    head = [str(RAY), "start", "--head", "--port", str(port), "--include-dashboard", "false", "--temp-dir", str(temp)]
    try:
        subprocess.run([*head, *common], env=ENV, check=True, capture_output=True, timeout=WAIT_S)
        second = [str(RAY), "start", "--address", f"127.0.0.1:{port}", *common]
        subprocess.run(second, env=ENV, check=True, capture_output=True, timeout=WAIT_S)
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([str(RAY), "stop", "--force"], env=ENV, capture_output=True, timeout=WAIT_S)


def _caption(inputs: Path, out: Path, *extra: str, timeout: float = WAIT_S) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "capfleet.cli", "caption", str(inputs), "-o", str(out), "--no-progress", *extra]
    return subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=timeout)


def _rows(out: Path) -> list[tuple]:
    return [(r["key"], r["text"], r["candidates"], r["scores"]) for r in sorted(read_rows(out), key=lambda r: r["key"])]


def test_ray_writes_the_local_runners_rows(ray_cluster, tmp_path):
    scenes = tmp_path / "scenes"
    assert subprocess.run([sys.executable, "-m", "capfleet.cli", "synth", "8", "-o", str(scenes), "--size", "64"],
                          env=ENV, capture_output=True).returncode == 0  # fmt: skip
    settings = ["--captioner", "builtin", "--scorer", "builtin", "--candidates", "3", "--max-new-tokens", "10"]
    settings += ["--shard-size", "2", "--dtype", "float32", "--device", "cpu", "--seed", "3"]
    local = _caption(scenes, tmp_path / "local", *settings)
    assert local.returncode == 0, local.stderr
    on_ray = _caption(scenes, tmp_path / "ray", *settings, "--runner", "ray", "--ray-address", ray_cluster)
    assert on_ray.returncode == 0, on_ray.stderr
    assert "Ray: 2 shard actors" in on_ray.stderr and "CPU 2" in on_ray.stderr  # one per node's CPU
    assert len(_rows(tmp_path / "local")) == 8 and _rows(tmp_path / "ray") == _rows(tmp_path / "local")


def _actor_processes() -> list[int]:
    """PIDs of Ray worker processes running a shard right now (Ray titles them `ray::_ShardActor.do`)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "cmdline").read_bytes().startswith(b"ray::_ShardActor.do"):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def test_an_actor_killed_mid_shard_is_replaced_and_rows_stay_exactly_once(ray_cluster, tmp_path):
    release, held = threading.Event(), threading.Event()

    def gate(path: str) -> None:
        if path.endswith("img-005.jpg") and not release.is_set():
            held.set()
            release.wait(WAIT_S)  # its shard stays in flight until an actor is killed

    names = [path.name for path in write_noise_images(tmp_path / "imgs", 8)]
    with serve_folder(tmp_path / "imgs", gate) as base:
        (tmp_path / "list.txt").write_text("".join(f"{base}/{name}\n" for name in names))
        args = ["--captioner", "none", "--shard-size", "2", "--runner", "ray", "--ray-address", ray_cluster]
        command = [sys.executable, "-m", "capfleet.cli", "caption", str(tmp_path / "list.txt"), "-o",
                   str(tmp_path / "out"), "--no-progress", *args]  # fmt: skip
        run = subprocess.Popen(command, env=ENV, stderr=subprocess.PIPE, text=True)
        assert held.wait(WAIT_S), "the gated image was never requested"
        deadline = time.monotonic() + 60
        while not (busy := _actor_processes()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert busy, "no actor was running a shard"
        os.kill(busy[0], signal.SIGKILL)
        release.set()
        _, stderr = run.communicate(timeout=WAIT_S)
    assert run.returncode == 0, stderr
    assert "its Ray actor died; redoing it" in stderr
    assert Counter(row["key"] for row in read_rows(tmp_path / "out")) == Counter({f"{i:09d}": 1 for i in range(8)})


@pytest.mark.parametrize("flags", [["--gpus-per-worker", "0.5"], ["--ray-cpus-per-worker", "2"]])
def test_actors_no_node_can_hold_are_refused_before_anything_is_written(ray_cluster, tmp_path, flags):
    """Ray would keep them pending for ever: the nodes have no GPU, and one CPU each (two together)."""
    write_noise_images(tmp_path / "imgs", 2)
    result = _caption(tmp_path / "imgs", tmp_path / "out", "--captioner", "none", "--runner", "ray",
                      "--ray-address", ray_cluster, *flags, timeout=120)  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "no node of the Ray cluster holds an actor of " in result.stderr
    assert "(nodes: 1 CPU, 0 GPU; 1 CPU, 0 GPU)" in result.stderr
    assert not (tmp_path / "out").exists()


def test_an_unreachable_cluster_is_one_line_and_nothing_is_written(tmp_path):
    pytest.importorskip("ray")
    write_noise_images(tmp_path / "imgs", 2)
    result = _caption(tmp_path / "imgs", tmp_path / "out", "--captioner", "none", "--runner", "ray",
                      "--ray-address", f"127.0.0.1:{_free_port()}", timeout=120)  # fmt: skip
    assert result.returncode == 2 and "cannot reach the Ray cluster at 127.0.0.1:" in result.stderr, result.stderr
    assert not (tmp_path / "out").exists()
