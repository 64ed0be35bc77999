"""Task arrays: N independent processes (a SLURM array, a Kubernetes indexed Job, a shell loop),
on any number of hosts, write into one OUT. Each task takes the pending shards that belong to it.

Ownership is a stable function of the shard name (its number modulo N), so a rerun of task I redoes
only I's unfinished shards, whatever the other tasks did meanwhile. Tasks need no coordinator:
the first start is race-free (run.json and the manifest are created if absent and compared
after), each task holds its own lock (`_capfleet/tasks/I.lock`, a lease on object stores), and a
plain run into the same OUT waits for no one: it is refused while any task runs.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass

from capfleet.config import ConfigError

TASKS_DIR = "_capfleet/tasks"


def task_of(shard_name: str, count: int) -> int:
    """The index of the task, of `count`, that owns a shard: stable across reruns and hosts.
    Shard names are their numbers in the plan (`00042`), so shard k goes to task k mod N and
    every task gets its share within one shard; another name is hashed."""
    return int(shard_name) % count if shard_name.isdigit() else zlib.crc32(shard_name.encode()) % count


@dataclass(frozen=True)
class Task:
    index: int
    count: int

    def owns(self, shard_name: str) -> bool:
        return task_of(shard_name, self.count) == self.index

    @property
    def lock_file(self) -> str:
        return f"{TASKS_DIR}/{self.index}.lock"

    @property
    def lease_file(self) -> str:
        return f"{TASKS_DIR}/{self.index}.lease.json"

    def __str__(self) -> str:
        return f"task {self.index} of {self.count}"


def task_leases(location) -> list[str]:
    """The tasks' lease files in OUT (object stores): a plain run is refused while one is live."""
    return [f"{TASKS_DIR}/{name}" for name in location.list(TASKS_DIR) if name.endswith(".lease.json")]


def task_from_environment(
    index: int | None, count: int | None, environ: dict[str, str] | None = None
) -> tuple[int | None, int | None, str | None]:
    """(index, count, where they came from). Flags win; else SLURM's array variables (the index
    counted from SLURM_ARRAY_TASK_MIN), else Kubernetes' JOB_COMPLETION_INDEX with --task-count."""
    environ = os.environ if environ is None else environ
    if index is not None:
        return index, count, None
    if "SLURM_ARRAY_TASK_ID" in environ:
        try:
            first = int(environ.get("SLURM_ARRAY_TASK_MIN", "0"))
            index = int(environ["SLURM_ARRAY_TASK_ID"]) - first
            count = count if count is not None else int(environ["SLURM_ARRAY_TASK_COUNT"])
        except (KeyError, ValueError) as exc:
            raise ConfigError(f"cannot read the SLURM array from the environment ({exc}): pass --task-index") from None
        return index, count, "SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN, SLURM_ARRAY_TASK_COUNT"
    if "JOB_COMPLETION_INDEX" in environ:
        if count is None:
            raise ConfigError("JOB_COMPLETION_INDEX is set (a Kubernetes indexed Job): pass --task-count COMPLETIONS")
        try:
            return int(environ["JOB_COMPLETION_INDEX"]), count, "JOB_COMPLETION_INDEX"
        except ValueError:
            raise ConfigError(f"JOB_COMPLETION_INDEX={environ['JOB_COMPLETION_INDEX']!r} is not a number") from None
    if count is not None:
        raise ConfigError("--task-count needs --task-index (or SLURM_ARRAY_TASK_ID / JOB_COMPLETION_INDEX)")
    return None, None, None
