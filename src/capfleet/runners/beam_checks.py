"""Refuse paths that Beam workers cannot see, before a run writes or submits anything.

A plain path names a file on the launcher. Workers that run elsewhere (Dataflow VMs, Flink or
Spark hosts, Docker containers) read and write their own disks instead: a local `-o` vanishes
with them and a local INPUT fails image by image. `file:///PATH` states that PATH is a shared
filesystem mounted at the same place on every worker, which Dataflow workers never have.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

from capfleet.config import ConfigError, RunConfig
from capfleet.io.paths import is_url, local_path
from capfleet.sources.files import is_image_path, parse_file_list

# Runners that run every worker inside the launcher process or its subprocesses. capfleet
# runs DirectRunner as the FnApiRunner, which ignores --environment_type.
_IN_PROCESS = frozenset({"direct", "fnapi", "bundlebaseddirect", "switchingdirect", "testdirect"})
_DATAFLOW = frozenset({"dataflow", "testdataflow"})
_FLINK_EMBEDDED = ("[local]", "[auto]")
_SPARK_LOCAL = re.compile(r"^local(\[.+\])?$")  # Beam's own pattern for an embedded Spark
_REACHABLE = "a URL every worker can reach (gs://, s3://, hdfs://, ...)"


def runner_key(runner: str) -> str:
    """Beam's spelling rules: case-insensitive, optional 'Runner' suffix, optional module path."""
    name = runner.rsplit(".", 1)[-1].lower()
    return name[: -len("runner")] if name.endswith("runner") else name


def environment_kind(environment_type: str | None) -> str | None:
    """DOCKER, PROCESS, EXTERNAL or LOOPBACK, from a name or a `beam:env:...` URN."""
    if not environment_type:
        return None
    lowered = environment_type.lower()
    for kind in ("docker", "process", "external", "loopback"):
        if kind in lowered:
            return kind.upper()
    return environment_type.upper()


def _embedded_cluster(key: str, flink_master: str | None, spark_master: str | None) -> bool:
    """Flink or Spark that Beam starts inside the launcher machine, or Prism (always local)."""
    if key == "flink":
        return (flink_master or "[auto]") in _FLINK_EMBEDDED
    if key == "spark":
        return bool(_SPARK_LOCAL.match(spark_master or "local[4]"))
    return key == "prism"


def workers_share_filesystem(
    runner: str, environment_type: str | None = None, flink_master: str | None = None, spark_master: str | None = None
) -> bool:
    """Whether Beam workers see this machine's files under the same paths.

    LOOPBACK runs the Python workers in the launcher process, whatever the cluster; PROCESS
    starts them on the cluster's hosts, which is this machine only for an embedded cluster;
    DOCKER and EXTERNAL workers run in containers with their own filesystems.
    """
    key = runner_key(runner)
    if key in _DATAFLOW:
        return False
    if key in _IN_PROCESS:
        return True
    embedded = _embedded_cluster(key, flink_master, spark_master)
    kind = environment_kind(environment_type) or ("LOOPBACK" if embedded else "DOCKER")
    return kind == "LOOPBACK" or (kind == "PROCESS" and embedded)


def _worker_view(runner: str, environment_type: str | None) -> str:
    kind = environment_kind(environment_type)
    return f"{runner} workers" if kind is None or runner_key(runner) in _DATAFLOW else f"{runner} {kind} workers"


def _unreachable(path: str, shared_mounts: bool) -> bool:
    if path.startswith("file://"):
        return not shared_mounts
    return not is_url(path)


def _instead(shared_mounts: bool) -> str:
    return _REACHABLE + (", or file:///PATH for a filesystem mounted at PATH on every worker" if shared_mounts else "")


def _list_entries(path: str) -> list[str]:
    """The paths inside a local file list (the launcher reads it; workers read its entries)."""
    with open(path, encoding="utf-8", errors="replace") as handle:
        return [listed.source for listed in parse_file_list(handle.read(), os.path.dirname(path))]


def check_item_paths(paths: Iterable[str], runner: str, environment_type: str | None = None, **cluster) -> None:
    """Refuse the first image path the workers cannot read (e.g. one listed in a file list)."""
    if workers_share_filesystem(runner, environment_type, **cluster):
        return
    shared_mounts = runner_key(runner) not in _DATAFLOW
    for path in paths:
        if _unreachable(path, shared_mounts):
            raise ConfigError(
                f"input image {path} is a local path that {_worker_view(runner, environment_type)} cannot read: "
                f"use {_instead(shared_mounts)}"
            )


def check_paths_for_runner(config: RunConfig, runner: str, environment_type: str | None = None, **cluster) -> None:
    """Refuse a local -o, a local INPUT, or a local file list naming local images, with what to use."""
    if workers_share_filesystem(runner, environment_type, **cluster):
        return
    workers = _worker_view(runner, environment_type)
    shared_mounts = runner_key(runner) not in _DATAFLOW
    if _unreachable(config.output, shared_mounts):
        raise ConfigError(
            f"-o {config.output} is a local folder that {workers} cannot write to: use {_instead(shared_mounts)}"
        )
    for spec in config.inputs:
        local = local_path(spec)
        if local is not None and os.path.isfile(local) and not is_image_path(local):
            try:
                check_item_paths(_list_entries(local), runner, environment_type, **cluster)
            except ConfigError as exc:
                raise ConfigError(f"{exc} (listed in {spec})") from None
        elif _unreachable(spec, shared_mounts):
            raise ConfigError(f"input {spec} is a local path that {workers} cannot read: use {_instead(shared_mounts)}")
