"""One run at a time per output: an OS file lock locally, a lease file on object stores.

Two runs writing into one OUT_DIR race on staging folders and done-markers and can lose a
shard, so the launcher holds this lock for the whole run. Beam workers of the same run do not
take it: the launcher holds it for them while the pipeline runs.

- Local outputs: `fcntl.flock` on `OUT/_capfleet/lock`. The kernel drops it when the process
  dies, however it dies (kill -9 included), so a crashed run never leaves a stale lock.
- Object stores (gs://, s3://, any fsspec URL) have no locks. The lock is a lease object
  `OUT/_capfleet/lease.json` naming its owner and an expiry; a heartbeat thread renews it every
  `ttl / 3` seconds. A run refuses while another owner's lease is unexpired, and takes over an
  expired one (the owner was killed). Object stores offer no portable compare-and-swap through
  fsspec, so two runs starting within the same second could both win: the lease guards against
  the common mistake (a second run started by hand or by a scheduler), not against a race
  engineered to the millisecond. A run whose lease was lost (taken over by another run, or not
  renewed before it expired: a heartbeat starved or cut off from the store) stops before it
  publishes another shard: `check_held` raises, and the shard in hand is left unpublished.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable

from capfleet.config import ConfigError
from capfleet.io.location import Location

LOCK_FILE = "_capfleet/lock"
LEASE_FILE = "_capfleet/lease.json"
LEASE_TTL_S = 120.0  # CAPFLEET_LEASE_TTL_S overrides it: longer on a slow store, shorter for a quick takeover


class LeaseLostError(ConfigError):
    """This run no longer owns OUT: publishing now could overwrite another run's shards."""


def read_lease(location: Location, relative: str) -> dict | None:
    try:
        return json.loads(location.read_text(relative))
    except (FileNotFoundError, ValueError):
        return None


def _busy_message(where: str, owner: str) -> str:
    return (
        f"another capfleet run ({owner}) is writing to {where}: wait for it to finish, stop it, "
        "or pick another output folder"
    )


class RunLock:
    """Context manager: exclusive ownership of an output for one run (or of one task's share of it).

    A task of a task array (`runners/task_array.py`) holds its own `lock_file`/`lease_file` and,
    locally, the run's lock shared, so tasks run side by side while a plain run is refused until
    every task has ended. `rivals` names the leases of the other kind that also refuse this one
    on object stores (a plain run's, or the tasks')."""

    def __init__(
        self,
        location: Location,
        ttl_s: float | None = None,
        lock_file: str = LOCK_FILE,
        lease_file: str = LEASE_FILE,
        shared_run_lock: bool = False,
        rivals: Callable[[], list[str]] = lambda: [],
    ):
        self.location = location
        self.ttl_s = ttl_s or float(os.environ.get("CAPFLEET_LEASE_TTL_S", LEASE_TTL_S))
        self.lock_file, self.lease_file = lock_file, lease_file
        self.shared_run_lock = shared_run_lock
        self.rivals = rivals
        self._shared_handle = None
        self.owner = f"{socket.gethostname()} pid {os.getpid()} {uuid.uuid4().hex[:8]}"
        self._handle = None
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None
        self._renewed = 0.0  # time.monotonic() of the last lease write that landed
        self._lost: str | None = None

    def __enter__(self) -> RunLock:
        if self.location.is_local:
            self._lock_file()
        else:
            self._take_lease()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    # -- local ---------------------------------------------------------------------------
    def _lock_file(self) -> None:
        if self.shared_run_lock:
            self._shared_handle = self._flock(LOCK_FILE, shared=True)
        self._handle = self._flock(self.lock_file, shared=False)

    def _flock(self, relative: str, shared: bool):
        """Hold `relative` locked; exclusive holders write their name into it for the refusal message."""
        import fcntl

        path = self.location.path(relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held for the whole run
        try:
            fcntl.flock(handle, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "the tasks of a task array"
            handle.close()
            raise ConfigError(_busy_message(self.location.url, owner)) from None
        if not shared:
            handle.seek(0)
            handle.truncate()
            handle.write(self.owner)
            handle.flush()
        return handle

    # -- object stores -------------------------------------------------------------------
    def _read_lease(self) -> dict | None:
        return read_lease(self.location, self.lease_file)

    def _write_lease(self) -> None:
        started = time.monotonic()
        lease = {"owner": self.owner, "expires": time.time() + self.ttl_s, "ttl_s": self.ttl_s}
        self.location.write_json(self.lease_file, lease)
        self._renewed = started

    def _take_lease(self) -> None:
        lease = self._read_lease()
        if lease is not None and lease.get("owner") != self.owner and lease.get("expires", 0) > time.time():
            raise ConfigError(_busy_message(self.location.url, lease.get("owner", "unknown")))
        for relative in self.rivals():
            rival = read_lease(self.location, relative)
            if rival is not None and rival.get("expires", 0) > time.time():
                raise ConfigError(_busy_message(self.location.url, rival.get("owner", "unknown")))
        self._write_lease()
        time.sleep(min(0.5, self.ttl_s / 10))  # let a writer that raced us land, then check who won
        lease = self._read_lease()
        if lease is None or lease.get("owner") != self.owner:
            raise ConfigError(_busy_message(self.location.url, (lease or {}).get("owner", "unknown")))
        self._heartbeat = threading.Thread(target=self._renew, name="capfleet-lease", daemon=True)
        self._heartbeat.start()

    def _renew(self) -> None:
        while not self._stop.wait(self.ttl_s / 3):
            try:
                lease = self._read_lease()
                if lease is not None and lease.get("owner") != self.owner:
                    self._lost = f"taken over by {lease.get('owner', 'unknown')}"
                    return  # never write over the new owner's lease
                self._write_lease()
            except Exception:  # a transient store error: the next beat retries well before expiry
                continue

    def check_held(self) -> None:
        """Raise LeaseLostError unless this run still owns OUT; call it before publishing anything.

        Locally the kernel's lock cannot be lost. On object stores the lease must have been
        renewed within its time to live and still name this run.
        """
        if self._heartbeat is None:
            return
        if self._lost is None and time.monotonic() - self._renewed >= self.ttl_s:
            self._lost = f"not renewed for {time.monotonic() - self._renewed:.0f} s (time to live {self.ttl_s:g} s)"
        if self._lost is None:
            lease = self._read_lease()
            if lease is None or lease.get("owner") != self.owner:
                self._lost = f"taken over by {(lease or {}).get('owner', 'nobody (deleted)')}"
        if self._lost is not None:
            raise LeaseLostError(
                f"this run lost its lease on {self.location.url} ({self._lost}): it stopped before publishing "
                "another shard; finished shards are kept. Make sure no other run writes there, then rerun"
            )

    def release(self) -> None:
        if self._handle is not None:
            self._handle.truncate(0)  # no stale name for a later refusal to quote
        for handle in (self._handle, self._shared_handle):
            if handle is not None:
                handle.close()  # closing drops the flock
        self._handle = self._shared_handle = None
        if self._heartbeat is not None:
            self._stop.set()
            self._heartbeat.join()
            self._heartbeat = None
            lease = self._read_lease()
            if lease is not None and lease.get("owner") == self.owner:
                self.location.remove(self.lease_file)
