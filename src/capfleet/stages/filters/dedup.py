"""Duplicates: exact (sha256 of the bytes) and near (64-bit perceptual hash within a Hamming distance).

The decision needs every earlier image, so it is made in three steps (see docs/filters.md):
`image_hashes` per image in a hash phase, `resolve_duplicates` once over all shards in listing
order, then `DuplicateFilter` in the caption phase looks each key up in its shard's verdicts.
This plugin says so with `PREPASS = True`: the runners hash every shard (runners/dedup.py)
before any is captioned, and the filter it loads is given each shard's verdicts.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import combinations
from math import comb

from capfleet.errors import require
from capfleet.options import option
from capfleet.sample import Sample
from capfleet.stages.filters.base import PANEL, reject

NAME = "dedup"
EXTRA = "dedup"
REQUIRES = ("imagehash",)
PREPASS = True
MODES = ("exact", "near")
HASH_SIDE = 64  # phash resizes to 32x32 anyway: decoding this small is enough and cheap
DEFAULT_DISTANCE = 8  # of 64 bits: catches resized, re-encoded and slightly cropped copies


@dataclass
class Options:
    dedup: str | None = option(
        None,
        "exact (sha256) | near (also perceptual hash): keep first copies.",
        fingerprint="if_set",
        choices=MODES,
        panel=PANEL,
    )
    dedup_distance: int | None = option(
        None,
        f"With --dedup near: max Hamming distance of 64 ({DEFAULT_DISTANCE}).",
        fingerprint="if_set",
        panel=PANEL,
    )


def check(config) -> list[str]:
    distance = config.dedup_distance
    checks = [
        (distance is None or 0 <= distance <= 16, "--dedup-distance must be in [0, 16]"),
        (distance is None or config.dedup == "near", "--dedup-distance needs --dedup near"),
        (
            config.dedup is None or (config.task_index is None and config.task_count is None),
            "--dedup needs every shard hashed before any is captioned: run it without task flags",
        ),
    ]
    return [message for ok, message in checks if not ok]


def near_distance(config) -> int | None:
    """The Hamming distance of near-duplicate search, None when only exact copies count."""
    if config.dedup != "near":
        return None
    return config.dedup_distance if config.dedup_distance is not None else DEFAULT_DISTANCE


def load(config) -> DuplicateFilter | None:
    """The filter without verdicts yet: `for_shard` gives it those of one shard."""
    if config.dedup is None:
        return None
    require(REQUIRES, EXTRA, "--dedup")
    return DuplicateFilter({}, near_distance(config))


def image_hashes(sample: Sample) -> dict:
    """The hash record of one decoded sample; an undecodable one has no hashes (it fails later)."""
    record = {"key": sample.key}
    if sample.error is None and sample.image is not None:
        import imagehash

        record["sha256"] = hashlib.sha256(sample.data or b"").hexdigest()
        record["phash"] = str(imagehash.phash(sample.image))
    return record


class _NearIndex:
    """Multi-index hashing. Cut the 64 bits into m bands: two hashes within `distance` bits differ
    in at most distance // m bits in some band (pigeonhole), so a lookup probes, in each band,
    the bucket of every value within that many bits of its own. m is chosen to balance the
    probes per lookup against the size of the buckets they hit."""

    def __init__(self, distance: int, expected_images: int | None = None):
        """`expected_images` only tunes the band count; unknown (None, 0) plans for ten million."""
        expected_images = expected_images or 10_000_000
        self.distance = distance
        self.bands = min(range(1, distance + 2), key=lambda m: _lookup_cost(m, distance, expected_images))
        self.edges = [round(i * 64 / self.bands) for i in range(self.bands + 1)]
        self.masks = [
            _flip_masks(self.edges[band + 1] - self.edges[band], distance // self.bands) for band in range(self.bands)
        ]
        self.buckets: list[dict[int, list[tuple[int, str]]]] = [{} for _ in range(self.bands)]

    def _band_values(self, value: int) -> Iterator[tuple[int, int]]:
        for band in range(self.bands):
            low, high = self.edges[band], self.edges[band + 1]
            yield band, (value >> low) & ((1 << (high - low)) - 1)

    def nearest(self, value: int) -> tuple[str, int] | None:
        best: tuple[str, int] | None = None
        for band, part in self._band_values(value):
            buckets = self.buckets[band]
            for mask in self.masks[band]:
                for other, key in buckets.get(part ^ mask, ()):
                    distance = (value ^ other).bit_count()
                    if distance <= self.distance and (best is None or (distance, key) < (best[1], best[0])):
                        best = (key, distance)
        return best

    def add(self, value: int, key: str) -> None:
        for band, part in self._band_values(value):
            self.buckets[band].setdefault(part, []).append((value, key))


def _flip_masks(bits: int, flips: int) -> list[int]:
    """Every mask of `bits` bits with at most `flips` ones."""
    return [sum(1 << i for i in ones) for count in range(flips + 1) for ones in combinations(range(bits), count)]


def _lookup_cost(bands: int, distance: int, images: int) -> float:
    """Probes per lookup plus the entries those probes are expected to scan (uniform hashes)."""
    bits = 64 // bands
    probes = bands * sum(comb(bits, i) for i in range(distance // bands + 1))
    return probes * (1 + images / 2**bits)


def resolve_duplicates(
    records: Iterable[dict], near_distance: int | None, expected_images: int | None = None
) -> Iterator[dict]:
    """Verdicts for records given in listing order: the first occurrence is kept, later copies
    are yielded as {key, duplicate_of, kind, distance}. Near copies compare with kept images only."""
    first_by_digest: dict[str, str] = {}
    near = _NearIndex(near_distance, expected_images) if near_distance is not None else None
    for record in records:
        if "sha256" not in record:
            continue
        original = first_by_digest.get(record["sha256"])
        if original is not None:
            yield {"key": record["key"], "duplicate_of": original, "kind": "exact", "distance": 0}
            continue
        first_by_digest[record["sha256"]] = record["key"]
        if near is None:
            continue
        value = int(record["phash"], 16)
        match = near.nearest(value)
        if match is not None:
            yield {"key": record["key"], "duplicate_of": match[0], "kind": "near", "distance": match[1]}
        else:
            near.add(value, record["key"])


class DuplicateFilter:
    """Applies the resolved verdicts of one shard: a duplicate becomes a filtered record."""

    name = "duplicate"
    decode_side = 0  # decides by key: the hash phase decoded its own thumbnails

    def __init__(self, verdicts: dict[str, dict], near_distance: int | None):
        self.verdicts = verdicts
        self.near_distance = near_distance
        self.threshold = near_distance if near_distance is not None else 0

    def for_shard(self, verdicts: dict[str, dict]) -> DuplicateFilter:
        return DuplicateFilter(verdicts, self.near_distance)

    def apply(self, sample: Sample) -> None:
        verdict = self.verdicts.get(sample.key)
        if verdict is not None:
            reject(
                sample,
                self.name,
                verdict["distance"],
                self.threshold,
                duplicate_of=verdict["duplicate_of"],
                kind=verdict["kind"],
            )
