"""A real local Ray cluster for the runner tests: a head and a second node, as `ray start` makes them,
on loopback, one CPU each; started once per session and stopped at the end (only its own processes:
`ray start --block` ends what it started, where `ray stop` would end every cluster on the machine)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

RAY = Path(sys.executable).parent / "ray"
# No token auth: a ~/.ray/auth_token (Ray writes one on any default local ray.init) would turn it on
# for the head but not for the node that joins it, which is then refused.
ENV = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": "1", "RAY_AUTH_MODE": "disabled"}
WAIT_S = 300  # only a broken build waits this long


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _alive_nodes(address: str) -> int:
    status = subprocess.run([str(RAY), "status", "--address", address], env=ENV, capture_output=True, text=True)
    return status.stdout.split("Pending:", 1)[0].count(" node_") if status.returncode == 0 else 0


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory):
    pytest.importorskip("ray")
    port, temp = free_port(), tmp_path_factory.mktemp("ray")
    address = f"127.0.0.1:{port}"
    common = ["--block", "--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--disable-usage-stats"]
    head = [str(RAY), "start", "--head", "--port", str(port), "--include-dashboard", "false", "--temp-dir", str(temp)]
    nodes = [subprocess.Popen([*head, *common], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        deadline = time.monotonic() + WAIT_S
        while _alive_nodes(address) < 1:
            assert time.monotonic() < deadline and nodes[0].poll() is None, "the Ray head did not start"
            time.sleep(1)
        second = [str(RAY), "start", "--address", address, *common]
        nodes.append(subprocess.Popen(second, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        while _alive_nodes(address) < 2:
            assert time.monotonic() < deadline and nodes[1].poll() is None, "the second Ray node did not join"
            time.sleep(1)
        yield address
    finally:
        for node in reversed(nodes):
            node.send_signal(signal.SIGTERM)
            try:
                node.wait(timeout=60)
            except subprocess.TimeoutExpired:
                node.kill()
