"""Object-store leases through the public run path: renewed while a run outlives its time to live,
and a run whose lease was taken over stops before it publishes another shard."""

from __future__ import annotations

import json
import threading
import time

import pytest
from typer.testing import CliRunner

from capfleet.cli import app
from capfleet.config import ConfigError
from capfleet.io.location import Location
from capfleet.runners.lock import RunLock
from tests.http_server import serve_folder
from tests.image_zoo import write_noise_images

TTL_S = 4.0  # renewed every 1.3 s: a heartbeat would have to stall 4 s to lose it on a busy machine
WAIT_S = 60  # only a broken build waits this long
runner = CliRunner()


def _run_in_background(list_file, url: str) -> tuple[threading.Thread, dict]:
    outcome: dict = {}
    args = ["caption", str(list_file), "-o", url, "--captioner", "none", "--shard-size", "1", "--workers", "1"]

    def run() -> None:
        outcome["result"] = runner.invoke(app, [*args, "--no-progress"])

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def _listed(tmp_path, base: str, count: int):
    names = [path.name for path in write_noise_images(tmp_path / "imgs", count)]
    (tmp_path / "list.txt").write_text("".join(f"{base}/{name}\n" for name in names))
    return tmp_path / "list.txt", names


def _lease(url: str) -> dict | None:
    location = Location(url)
    return json.loads(location.read_text("_capfleet/lease.json")) if location.exists("_capfleet/lease.json") else None


def _markers(url: str) -> list[str]:
    return Location(url).list("_capfleet/completions")


def test_a_lease_is_renewed_while_the_run_outlives_its_time_to_live(tmp_path, monkeypatch):
    monkeypatch.setenv("CAPFLEET_LEASE_TTL_S", str(TTL_S))
    url = "memory://leases/renewed"
    release, held = threading.Event(), threading.Event()

    def gate(path: str) -> None:
        if not path.endswith("img-000.jpg"):
            held.set()
            release.wait(WAIT_S)  # the run is held inside its second shard

    with serve_folder(tmp_path / "imgs", gate) as base:
        list_file, names = _listed(tmp_path, base, 3)
        thread, outcome = _run_in_background(list_file, url)
        assert held.wait(WAIT_S), "the run never reached its second shard"
        first = _lease(url)["expires"]
        expiries, deadline = {first}, time.monotonic() + WAIT_S
        # However slowly the run started: wait until the lease seen first has expired, renewed meanwhile.
        while (time.time() < first + 1 or len(expiries) < 3) and thread.is_alive():
            assert time.monotonic() < deadline, expiries
            lease = _lease(url)
            if lease is not None:
                expiries.add(lease["expires"])
            time.sleep(0.05)
        # Without renewal another run could take OUT now.
        with pytest.raises(ConfigError, match="another capfleet run"):
            RunLock(Location(url), ttl_s=TTL_S).__enter__()
        release.set()
        thread.join(WAIT_S)
    assert outcome["result"].exit_code == 0, outcome["result"].output
    assert len(expiries) >= 3, expiries  # renewed every ttl/3, not only written once
    assert len(_markers(url)) == len(names)
    assert _lease(url) is None  # released at the end


def test_a_run_whose_lease_was_taken_over_stops_before_publishing_another_shard(tmp_path, monkeypatch):
    monkeypatch.setenv("CAPFLEET_LEASE_TTL_S", str(TTL_S))
    url = "memory://leases/taken"
    release = threading.Event()
    held_back = {f"img-{index:03d}.jpg" for index in range(3, 8)}

    def gate(path: str) -> None:
        if path.rsplit("/", 1)[-1] in held_back:
            release.wait(WAIT_S)

    with serve_folder(tmp_path / "imgs", gate) as base:
        list_file, _ = _listed(tmp_path, base, 8)
        thread, outcome = _run_in_background(list_file, url)
        deadline = time.monotonic() + WAIT_S
        while len(_markers(url)) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(_markers(url)) == 3
        # Another run took OUT over (this run's heartbeat had stalled past the expiry, say).
        other = {"owner": "other-host pid 7 0badcafe", "expires": time.time() + 600, "ttl_s": 600}
        Location(url).write_json("_capfleet/lease.json", other)
        release.set()
        thread.join(WAIT_S)
    result = outcome["result"]
    assert result.exit_code == 2 and "lost its lease" in result.output and "other-host" in result.output
    assert len(_markers(url)) == 3  # not one more shard marked done
    assert not Location(url).exists("00003")
    assert _lease(url) == other  # the new owner's lease is left alone
