"""--runner ray on a real local Ray cluster (tests/runners/conftest.py: a head and a second node, as
`ray start` makes them); its rows equal the other runners' in test_same_rows_everywhere.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.image_zoo import write_noise_images
from tests.pipeline.helpers import read_rows
from tests.runners.conftest import ENV, WAIT_S, free_port


def _caption(inputs: Path, out: Path, *extra: str, timeout: float = WAIT_S) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "capfleet.cli", "caption", str(inputs), "-o", str(out), "--no-progress", *extra]
    return subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=timeout)


def _process_with_client_port(port: int) -> int | None:
    """The PID whose TCP socket has local port `port` (the reader blocked on our server)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{fields[9]}]")
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if any(os.readlink(fd) in inodes for fd in (entry / "fd").iterdir()):
                    return int(entry.name)
            except OSError:
                continue
    return None


class _HeldImages(BaseHTTPRequestHandler):
    """Serves the test's images; the first request for img-005.jpg is held until `release`."""

    folder: Path
    release = threading.Event()
    held_port: list[int] = []

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        name = self.path.rsplit("/", 1)[-1]
        if name == "img-005.jpg" and not self.held_port:
            self.held_port.append(self.client_address[1])
            self.release.wait(WAIT_S)
        data = (self.folder / name).read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def test_an_actor_killed_mid_shard_is_replaced_and_rows_stay_exactly_once(ray_cluster, tmp_path):
    names = [path.name for path in write_noise_images(tmp_path / "imgs", 8)]
    handler = type("Held", (_HeldImages,), {"folder": tmp_path / "imgs", "release": threading.Event(), "held_port": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        (tmp_path / "list.txt").write_text("".join(f"{base}/{name}\n" for name in names))
        args = ["--captioner", "none", "--shard-size", "2", "--runner", "ray", "--ray-address", ray_cluster]
        command = [sys.executable, "-m", "capfleet.cli", "caption", str(tmp_path / "list.txt"), "-o",
                   str(tmp_path / "out"), "--no-progress", *args]  # fmt: skip
        run = subprocess.Popen(command, env=ENV, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + WAIT_S
        while not handler.held_port and time.monotonic() < deadline:
            time.sleep(0.1)
        assert handler.held_port, "the held image was never requested"
        actor = _process_with_client_port(handler.held_port[0])
        assert actor is not None, "no process holds the held request"
        os.kill(actor, signal.SIGKILL)  # the actor reading shard 00002, mid-shard
        handler.release.set()
        _, stderr = run.communicate(timeout=WAIT_S)
    finally:
        handler.release.set()
        server.shutdown()
        server.server_close()
    assert run.returncode == 0, stderr
    assert "shard 00002: its Ray actor died; redoing it" in stderr
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
                      "--ray-address", f"127.0.0.1:{free_port()}", timeout=120)  # fmt: skip
    assert result.returncode == 2 and "cannot reach the Ray cluster at 127.0.0.1:" in result.stderr, result.stderr
    assert not (tmp_path / "out").exists()
