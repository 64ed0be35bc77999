"""Shards, the unit of work, resume and output: fixed-size slices of a listing, or natural shards.

A listed source (folders, file lists) is cut into slices of `shard_size` items. A natural shard
is one input file (a webdataset tar) or a row range of one (parquet, arrow): it is planned from
the file-level listing alone and its samples are only enumerated by the worker that reads it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from capfleet.sample import Item


@dataclass(frozen=True)
class ShardSpec:
    """A shard: its id (also its output name) and what it must produce.

    Listed shards carry their `items`. Natural shards name their `origin` file and the sample
    range [`start`, `stop`) to read from it; `stop=None` means "to the end" (a tar's sample count
    is unknown until it is read).
    """

    shard_id: int
    items: tuple[Item, ...] = ()
    origin: str | None = None
    start: int = 0
    stop: int | None = None
    # File lists only: the byte offset of a line at or before row `start` (row `seek_row`), so a
    # worker seeks instead of reading the list from its top; `key_base` numbers rows globally.
    seek_offset: int = 0
    seek_row: int = 0
    key_base: int = 0

    @property
    def name(self) -> str:
        return f"{self.shard_id:05d}"

    @property
    def planned(self) -> int | None:
        """How many samples the shard covers (None: all of its origin); recorded in its done-marker."""
        if self.origin is None:
            return len(self.items)
        return None if self.stop is None else self.stop - self.start

    @property
    def size_hint(self) -> int:
        """Samples to expect, for progress bars and summaries (0 when unknown)."""
        return self.planned or 0

    def to_json(self) -> dict[str, Any]:
        if self.origin is None:
            return {"shard_id": self.shard_id, "items": [item.to_json() for item in self.items]}
        fields = ("shard_id", "origin", "start", "stop", "seek_offset", "seek_row", "key_base")
        return {name: getattr(self, name) for name in fields}

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> ShardSpec:
        if "origin" not in row:
            return cls(row["shard_id"], tuple(Item.from_json(item) for item in row["items"]))
        return cls(**row)


def plan_shards(items: Iterable[Item], shard_size: int, limit: int | None = None) -> list[ShardSpec]:
    """Consecutive slices of `shard_size` items; `limit` truncates the listing itself.

    Because the listing is truncated, not the plan, a `--limit` run covers exactly the items a
    full run does first, and a later full run redoes the one shard that was cut short.
    """
    shards: list[ShardSpec] = []
    batch: list[Item] = []
    for index, item in enumerate(items):
        if limit is not None and index >= limit:
            break
        batch.append(item)
        if len(batch) == shard_size:
            shards.append(ShardSpec(len(shards), tuple(batch)))
            batch = []
    if batch:
        shards.append(ShardSpec(len(shards), tuple(batch)))
    return shards


def plan_row_ranges(origins: Iterable[tuple[str, int]], shard_size: int, limit: int | None = None) -> list[ShardSpec]:
    """Natural shards over files of known length (parquet, arrow): row ranges of `shard_size`,
    never crossing a file; `limit` keeps exactly the first `limit` rows of the whole input."""
    shards: list[ShardSpec] = []
    remaining = limit
    for origin, rows in origins:
        for start in range(0, rows, shard_size):
            if remaining is not None and remaining <= 0:
                return shards
            stop = min(start + shard_size, rows)
            if remaining is not None:
                stop = min(stop, start + remaining)
                remaining -= stop - start
            shards.append(ShardSpec(len(shards), origin=origin, start=start, stop=stop))
    return shards
