"""Inputs: each module lists one kind of input (or its natural shards) and reads a shard's samples."""

from capfleet.sources.files import FileSource
from capfleet.sources.kinds import open_source
from capfleet.sources.plan import ShardSpec, plan_shards

__all__ = ["FileSource", "ShardSpec", "open_source", "plan_shards"]
