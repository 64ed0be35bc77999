"""How many CPUs this process may really use: its affinity mask, capped by a cgroup CPU quota.

`os.cpu_count()` counts the machine's cores; in a container or under `taskset` far fewer are
ours, and torch's default of one thread per core then runs many times slower.
"""

from __future__ import annotations

import math
import os

_CGROUP_V2 = "/sys/fs/cgroup/cpu.max"
_CGROUP_V1 = ("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "/sys/fs/cgroup/cpu/cpu.cfs_period_us")


def read_small_file(path: str) -> str | None:
    """A /proc or /sys file's text, stripped; None where it cannot be read."""
    try:
        with open(path, encoding="ascii") as handle:
            return handle.read().strip()
    except OSError:
        return None


def cgroup_cpu_limit(v2: str = _CGROUP_V2, v1: tuple[str, str] = _CGROUP_V1) -> int | None:
    """The cgroup's CPU quota rounded up to whole CPUs, or None when there is no quota."""
    text = read_small_file(v2)
    if text is not None:
        quota, _, period = text.partition(" ")
    else:
        quota, period = read_small_file(v1[0]), read_small_file(v1[1])
        if quota is None or period is None:
            return None
    if quota in ("max", "-1") or not period:
        return None
    try:
        return max(1, math.ceil(int(quota) / int(period)))
    except ValueError:
        return None


def default_workers() -> int:
    """Reader threads: one per usable CPU (decoding is CPU work), at least 4 (I/O waits overlap)."""
    return max(4, available_cpus())


def available_cpus() -> int:
    """CPUs this process may use: min(affinity mask, cgroup quota), at least 1."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS, Windows
        count = os.cpu_count() or 1
    limit = cgroup_cpu_limit()
    return max(1, min(count, limit) if limit is not None else count)


def busy_note(threads: int) -> str | None:
    """A hint when other work already keeps the CPUs busy: `threads` torch threads would then
    fight it (measured on a shared 2-core machine: 2 threads ran 5x slower than 1)."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # Windows
        return None
    if threads <= 1 or load < available_cpus():
        return None
    return f"the CPUs are busy (load {load:.1f} on {available_cpus()} CPUs): --threads 1 may run much faster"
