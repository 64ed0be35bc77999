"""Local file lists (one path/URL per line) as natural shards: a 100-million-line list is planned
from one streaming pass that records a byte offset every `CHECKPOINT_ROWS` lines, never from a
list of every item, so planning memory does not grow with the list.

Rows are numbered across the lists in order (key = global row, as for any listing); a list is
taken as it is: a line names one image, duplicates included.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

from capfleet.io.paths import is_url
from capfleet.io.reading import ReadLimits
from capfleet.sample import Item, position_key
from capfleet.sources.files import fetches, is_image_path, parse_file_list
from capfleet.sources.plan import RowRange, ShardSpec, plan_row_ranges
from capfleet.sources.units import Unit

CHECKPOINT_ROWS = 1024


def is_list_spec(spec: str) -> bool:
    """A local file that is not an image: the existing file-list format."""
    return not is_url(spec) and os.path.isfile(spec) and not is_image_path(spec)


def _is_entry(line: bytes) -> bool:
    stripped = line.strip()
    return bool(stripped) and not stripped.startswith(b"#")


def scan_list(path: str) -> dict:
    """Row count and the byte offset of every CHECKPOINT_ROWS-th row, in one pass."""
    rows, offsets, position = 0, [], 0
    with open(path, "rb") as handle:
        for line in handle:
            if _is_entry(line):
                if rows % CHECKPOINT_ROWS == 0:
                    offsets.append(position)
                rows += 1
            position += len(line)
    return {"origin": path, "rows": rows, "offsets": offsets}


class ListSource:
    def __init__(self, inputs: list[str], limits: ReadLimits = ReadLimits()):  # noqa: B008 - frozen
        self.inputs = list(inputs)
        self.limits = limits

    def listing(self) -> Iterator[dict]:
        return (scan_list(path) for path in self.inputs)

    def plan(self, rows: Iterable[dict], shard_size: int, limit: int | None = None) -> list[ShardSpec]:
        scans = {}
        base = 0
        for row in rows:
            scans[row["origin"]] = (row, base)
            base += row["rows"]
        ranges = plan_row_ranges(((origin, scan["rows"]) for origin, (scan, _) in scans.items()), shard_size, limit)
        planned = []
        for shard_id, rows_of in enumerate(ranges):
            scan, key_base = scans[rows_of.origin]
            checkpoint = rows_of.start // CHECKPOINT_ROWS
            # The byte offset of a line at or before row `start` (row `seek_row`), so a worker seeks
            # instead of reading the list from its top; `key_base` numbers rows across the lists.
            seek = {"seek_offset": scan["offsets"][checkpoint], "seek_row": checkpoint * CHECKPOINT_ROWS}
            planned.append(rows_of.shard(shard_id, **seek, key_base=key_base))
        return planned

    def read(self, shard: ShardSpec, only: set[str] | None = None) -> Iterator[Unit]:
        return fetches(self._items(shard), self.limits, only)

    def opens(self, shard: ShardSpec) -> Iterator[str]:
        yield shard.cursor["origin"]  # the list itself: its entries were checked when the run started

    def _items(self, shard: ShardSpec) -> Iterator[Item]:
        rows_of, cursor = RowRange.of(shard), shard.cursor
        row = cursor["seek_row"]
        with open(rows_of.origin, "rb") as handle:
            handle.seek(cursor["seek_offset"])
            for line in handle:
                if not _is_entry(line):
                    continue
                if row >= rows_of.stop:
                    return
                if row >= rows_of.start:
                    text = line.decode("utf-8", errors="replace")
                    for listed in parse_file_list(text, os.path.dirname(rows_of.origin)):
                        yield Item(position_key(cursor["key_base"] + row), listed.source, listed.original_text)
                row += 1
