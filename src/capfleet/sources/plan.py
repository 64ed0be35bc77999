"""Cut an ordered item listing into fixed-size shards, the unit of work, resume and output."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from capfleet.sample import Item


@dataclass(frozen=True)
class ShardSpec:
    """A shard: its id (also its output folder name) and the items it must produce."""

    shard_id: int
    items: tuple[Item, ...]

    @property
    def name(self) -> str:
        return f"{self.shard_id:05d}"


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
