"""How much memory this process may still take: the kernel's MemAvailable, capped by a cgroup limit.

In a container (a Kubernetes pod, a SLURM job's cgroup) /proc/meminfo shows the host's memory; the
container is killed at its own limit. `--model-processes` auto starts a helper with a second copy of
the models only where this says it fits.
"""

from __future__ import annotations

from capfleet.cpus import read_small_file

_CGROUP_V2 = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current")
_CGROUP_V1 = ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes")
_NO_LIMIT = 1 << 60  # cgroup v1 writes "no limit" as a page-rounded 2**63


def cgroup_memory_room(v2: tuple[str, str] = _CGROUP_V2, v1: tuple[str, str] = _CGROUP_V1) -> int | None:
    """Bytes left under the cgroup's memory limit, or None when there is no limit (or no cgroup)."""
    for limit_path, usage_path in (v2, v1):
        limit, usage = read_small_file(limit_path), read_small_file(usage_path)
        if limit is None or usage is None:
            continue
        if limit == "max":
            return None
        try:
            limit_bytes, usage_bytes = int(limit), int(usage)
        except ValueError:
            return None
        return None if limit_bytes >= _NO_LIMIT else max(0, limit_bytes - usage_bytes)
    return None


def mem_available(meminfo: str = "/proc/meminfo") -> int | None:
    """The kernel's MemAvailable in bytes (Linux), or None where it cannot be read."""
    text = read_small_file(meminfo) or ""
    for line in text.splitlines():
        if line.startswith("MemAvailable:"):
            try:
                return int(line.split()[1]) * 1024
            except (ValueError, IndexError):
                return None
    return None


def available_memory(meminfo: str = "/proc/meminfo", **cgroup) -> int | None:
    """The smaller of MemAvailable and the cgroup's room; None when neither can be read."""
    known = [value for value in (mem_available(meminfo), cgroup_memory_room(**cgroup)) if value is not None]
    return min(known) if known else None
