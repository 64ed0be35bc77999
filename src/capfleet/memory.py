"""How much memory this process may still take: the kernel's MemAvailable, capped by a cgroup limit.

In a container (a Kubernetes pod, a SLURM job's cgroup) /proc/meminfo shows the host's memory; the
container is killed at its own limit. `--model-processes` auto starts a helper with a second copy of
the models only where this says it fits. The cgroup's usage counts the page cache too; its inactive
files are reclaimed before the container is killed (the kubelet's working set leaves them out too),
so reading a dataset's images does not make the room look smaller than it is.
"""

from __future__ import annotations

from capfleet.cpus import read_small_file

# (limit, usage, stat file, the stat's reclaimable page-cache field)
_CGROUP_V2 = (
    "/sys/fs/cgroup/memory.max",
    "/sys/fs/cgroup/memory.current",
    "/sys/fs/cgroup/memory.stat",
    "inactive_file",
)
_CGROUP_V1 = (
    "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    "/sys/fs/cgroup/memory/memory.usage_in_bytes",
    "/sys/fs/cgroup/memory/memory.stat",
    "total_inactive_file",
)
_NO_LIMIT = 1 << 60  # cgroup v1 writes "no limit" as a page-rounded 2**63


def _stat_field(path: str, name: str) -> int:
    """One field of a cgroup's memory.stat, in bytes; 0 where it cannot be read."""
    for line in (read_small_file(path) or "").splitlines():
        key, _, value = line.partition(" ")
        if key == name and value.strip().isdigit():
            return int(value)
    return 0


def cgroup_memory_room(v2: tuple[str, ...] = _CGROUP_V2, v1: tuple[str, ...] = _CGROUP_V1) -> int | None:
    """Bytes left under the cgroup's memory limit (reclaimable page cache counted as room), or None when
    there is no limit (or no cgroup)."""
    for limit_path, usage_path, stat_path, cache_field in (v2, v1):
        limit, usage = read_small_file(limit_path), read_small_file(usage_path)
        if limit is None or usage is None:
            continue
        if limit == "max":
            return None
        try:
            limit_bytes, usage_bytes = int(limit), int(usage)
        except ValueError:
            return None
        if limit_bytes >= _NO_LIMIT:
            return None
        working_set = max(0, usage_bytes - _stat_field(stat_path, cache_field))
        return max(0, limit_bytes - working_set)
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
