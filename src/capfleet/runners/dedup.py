"""The duplicate phase, run before captioning when --dedup is set, by both runners.

1. Hash: every shard's images are read and hashed (sha256 + perceptual hash) into
   `_capfleet/dedup/hashes-SSSSS.jsonl` — in parallel, shard by shard, resumable per file.
2. Resolve: the launcher streams the hash files in listing order and writes each shard's
   verdicts (`verdicts-SSSSS.jsonl`: key, duplicate_of, kind, distance); deterministic, so it is
   simply redone whenever shards are pending.
3. The caption phase's `DuplicateFilter` reads only its own shard's verdicts.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Executor

from capfleet.config import RunConfig
from capfleet.io.location import Location
from capfleet.parallel import ordered_map
from capfleet.protocols import Source
from capfleet.runners.state import STATE_DIR
from capfleet.sample import Sample
from capfleet.sources.plan import ShardSpec
from capfleet.sources.units import fetched
from capfleet.stages.decode import decode_sample
from capfleet.stages.filters.dedup import HASH_SIDE, image_hashes, near_distance, resolve_duplicates

DEDUP_DIR = f"{STATE_DIR}/dedup"


def hashes_file(shard_name: str) -> str:
    return f"{DEDUP_DIR}/hashes-{shard_name}.jsonl"


def verdicts_file(shard_name: str) -> str:
    return f"{DEDUP_DIR}/verdicts-{shard_name}.jsonl"


def unhashed(location: Location, shards: list[ShardSpec]) -> list[ShardSpec]:
    """Shards without a complete hash file (a --limit run's cut-short shard is hashed again)."""
    present = set(location.list(DEDUP_DIR))
    return [
        shard
        for shard in shards
        if f"hashes-{shard.name}.jsonl" not in present
        or (shard.planned is not None and len(location.read_lines(hashes_file(shard.name))) != shard.planned)
    ]


def hash_shard(shard: ShardSpec, source: Source, executor: Executor, config: RunConfig) -> int:
    """Read, decode small and hash one shard; the file appears complete or not at all."""
    window = 4 * config.workers  # read-ahead only: no model batch to keep fed here

    def hashed(sample: Sample) -> dict:
        return image_hashes(decode_sample(sample, config.max_pixels, HASH_SIDE, float("inf")))

    records = list(ordered_map(hashed, fetched(source.read(shard), executor, window), executor, window))
    Location(config.output).write_lines(hashes_file(shard.name), records)
    return len(records)


def _all_hashes(location: Location, shards: list[ShardSpec], shard_of: dict[str, str]) -> Iterator[dict]:
    """Every hash record in listing order, noting each key's shard on the way (from the hash files,
    not the plan: a natural shard, a tar, lists its keys only once read)."""
    for shard in shards:
        for row in location.read_lines(hashes_file(shard.name)):
            shard_of[row["key"]] = shard.name
            yield row


def resolve(config: RunConfig, shards: list[ShardSpec]) -> int:
    """Write every shard's verdicts from all hash files, in listing order; returns the duplicates."""
    location = Location(config.output)
    by_shard: dict[str, list[dict]] = {shard.name: [] for shard in shards}
    shard_of: dict[str, str] = {}
    expected = sum(shard.size_hint for shard in shards)  # sizes the near index; 0 for tars: unknown
    verdicts = resolve_duplicates(_all_hashes(location, shards, shard_of), near_distance(config), expected)
    for verdict in verdicts:  # a verdict comes after its own record, so its shard is known
        by_shard[shard_of[verdict["key"]]].append(verdict)
    for name, rows in by_shard.items():
        location.write_lines(verdicts_file(name), rows)
    return sum(len(rows) for rows in by_shard.values())


def load_verdicts(location: Location, shard_name: str) -> dict[str, dict]:
    """One shard's verdicts by key; missing means the resolve step did not run (a bug, so raise)."""
    return {row["key"]: row for row in location.read_lines(verdicts_file(shard_name))}
