"""Shards, the unit of work, resume and output: fixed-size slices of a listing, or natural shards.

A listed source (folders) is cut into slices of `shard_size` items. A natural shard is one input
file (a webdataset tar) or a row range of one (parquet, arrow, file lists): it is planned from the
file-level listing alone and its samples are only enumerated by the worker that reads it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from capfleet.sample import Item


@dataclass(frozen=True)
class ShardSpec:
    """A shard: its id (also its output name), how many samples it covers, and where they are.

    `planned`: the samples the shard must produce, recorded in its done-marker (None: all of its
    input file, a tar's count being unknown until it is read). `cursor`: where the source that
    planned the shard finds them, a JSON-ready dict that only that source reads.
    """

    shard_id: int
    planned: int | None
    cursor: dict[str, Any] = field(hash=False)

    @property
    def name(self) -> str:
        return f"{self.shard_id:05d}"

    @property
    def size_hint(self) -> int:
        """Samples to expect, for progress bars and summaries (0 when unknown)."""
        return self.planned or 0

    def to_json(self) -> dict[str, Any]:
        return {"shard_id": self.shard_id, **self.cursor, "planned": self.planned}

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> ShardSpec:
        cursor = {name: value for name, value in row.items() if name not in ("shard_id", "planned")}
        planned = row["planned"] if "planned" in row else _planned_before_cursors(cursor)
        return cls(row["shard_id"], planned, cursor)


def _planned_before_cursors(row: dict[str, Any]) -> int | None:
    """A shard written before shards had a cursor has no `planned`: it is its items, or its row range."""
    if "origin" not in row:
        return len(row["items"])
    return None if row["stop"] is None else row["stop"] - row["start"]


def plan_shards(rows: Iterable[dict], shard_size: int, limit: int | None = None) -> list[ShardSpec]:
    """Consecutive slices of `shard_size` listing rows (items); `limit` truncates the listing itself.

    Because the listing is truncated, not the plan, a `--limit` run covers exactly the items a
    full run does first, and a later full run redoes the one shard that was cut short.
    """
    shards: list[ShardSpec] = []
    batch: list[dict] = []
    for index, row in enumerate(rows):
        if limit is not None and index >= limit:
            break
        batch.append(row)
        if len(batch) == shard_size:
            shards.append(ShardSpec(len(shards), len(batch), {"items": batch}))
            batch = []
    if batch:
        shards.append(ShardSpec(len(shards), len(batch), {"items": batch}))
    return shards


def shard_items(shard: ShardSpec) -> Iterator[Item]:
    """The items of a shard `plan_shards` made, in listing order."""
    return (Item.from_json(row) for row in shard.cursor["items"])


@dataclass(frozen=True)
class RowRange:
    """A natural shard's cursor: rows [start, stop) of one input file (`stop` None: to its end)."""

    origin: str
    start: int = 0
    stop: int | None = None

    @classmethod
    def of(cls, shard: ShardSpec) -> RowRange:
        return cls(shard.cursor["origin"], shard.cursor["start"], shard.cursor["stop"])

    def shard(self, shard_id: int, **more: Any) -> ShardSpec:
        """The shard reading this range; `more`: what else its source keeps in the cursor."""
        planned = None if self.stop is None else self.stop - self.start
        return ShardSpec(shard_id, planned, {"origin": self.origin, "start": self.start, "stop": self.stop, **more})


def plan_row_ranges(origins: Iterable[tuple[str, int]], shard_size: int, limit: int | None = None) -> list[RowRange]:
    """Natural shards over files of known length (parquet, arrow, file lists): row ranges of `shard_size`,
    never crossing a file; `limit` keeps exactly the first `limit` rows of the whole input."""
    ranges: list[RowRange] = []
    remaining = limit
    for origin, rows in origins:
        for start in range(0, rows, shard_size):
            if remaining is not None and remaining <= 0:
                return ranges
            stop = min(start + shard_size, rows)
            if remaining is not None:
                stop = min(stop, start + remaining)
                remaining -= stop - start
            ranges.append(RowRange(origin, start, stop))
    return ranges
