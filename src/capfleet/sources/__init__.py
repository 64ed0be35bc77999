"""Inputs: each module lists one kind of input into Items and reads a shard's bytes."""

from capfleet.sources.files import FileSource, open_source
from capfleet.sources.plan import ShardSpec, plan_shards

__all__ = ["FileSource", "ShardSpec", "open_source", "plan_shards"]
