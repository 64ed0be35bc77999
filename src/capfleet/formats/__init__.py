"""Output formats (`--format`): one plugin module each (`capfleet.plugins`), reading and writing its shards.

A format module has NAME, EXTRA, REQUIRES, Options, `check(config)` (called by `RunConfig.validate`),
`open(config, location, shard_name) -> ShardWriter` (formats/base.py: staging and atomic publication)
and `read_rows(path)`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

from capfleet import plugins
from capfleet.formats.base import ShardWriter
from capfleet.io.location import Location

__all__ = ["ShardWriter", "read_shard_rows", "shard_writer_factory"]


def shard_writer_factory(config: Any, location: Location) -> Callable[[str], ShardWriter]:
    """`open(shard_name) -> ShardWriter` for the run's `--format`."""
    return partial(plugins.find("format", config.format).open, config, location)


def read_shard_rows(path: Path, format_name: str) -> Iterator[dict]:
    """The rows of one published shard of format `format_name` (used by `capfleet merge`)."""
    return plugins.find("format", format_name).read_rows(path)
