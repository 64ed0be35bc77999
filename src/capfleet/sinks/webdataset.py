"""webdataset output: OUT/SSSSS.tar, one tar per shard, readable by the `webdataset` library.

Layout of each sample (`__key__` is the input tar's own key, else the capfleet key):
  KEY.<ext>   every original member, byte for byte (the image, .cls, .npy, ...) but txt and json
  KEY.txt     the chosen caption, UTF-8
  KEY.json    the original json member's fields, plus "capfleet": {key, source, text,
              candidates, scores, original_text, captioner, scorer}; the original txt caption
              survives as capfleet.original_text
Headers are fixed (mtime 0, mode 0644, no owner), so a redone shard is byte-identical.
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from capfleet.sample import Sample
from capfleet.sinks.base import ShardWriter
from capfleet.sinks.location import Location
from capfleet.tar_members import TarWriter

CAPFLEET_FIELD = "capfleet"


def _json_member(record: dict[str, Any], original: bytes | None) -> bytes:
    payload: dict[str, Any] = {}
    if original is not None:
        try:
            parsed = json.loads(original)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            payload.update(parsed)
        else:
            payload["original_json"] = original.decode("utf-8", errors="replace")
    payload[CAPFLEET_FIELD] = record
    return json.dumps(payload, ensure_ascii=False).encode("utf-8")


class WebDatasetShardWriter(ShardWriter):
    suffix = ".tar"

    def __init__(self, location: Location, name: str):
        super().__init__(location, name)
        self._tar: TarWriter | None = None

    def _open(self) -> TarWriter:
        if self._tar is None:
            self._tar = TarWriter(self.staged / self.output_name)
        return self._tar

    def _include(self, published: Path) -> int:
        target, rows = self._open(), 0
        with tarfile.open(published) as archive:
            for member in archive:
                content = archive.extractfile(member)
                target.add_member(member, content.read() if content is not None else b"")
                rows += member.name.endswith(".json")
        return rows

    def _add(self, record: dict[str, Any], sample: Sample) -> None:
        self._open()
        key = sample.archive_key or record["key"]
        members = list(sample.members) or [(sample.extension.lstrip("."), sample.data or b"")]
        original_json = dict(members).get("json")
        for extension, data in members:
            if extension not in ("txt", "json"):
                self._put(f"{key}.{extension}", data)
        self._put(f"{key}.txt", record["text"].encode("utf-8"))
        self._put(f"{key}.json", _json_member(record, original_json))

    def _put(self, name: str, data: bytes) -> None:
        self._tar.add(name, data)

    def _finish(self, staged: Path) -> None:
        self._close()

    def _close(self) -> None:
        if self._tar is not None:
            self._tar.close()
            self._tar = None


def read_rows(shard: Path) -> Iterator[dict[str, Any]]:
    """The capfleet rows of a published tar, in order."""
    with tarfile.open(shard) as archive:
        for member in archive:
            if member.name.endswith(".json"):
                row = json.loads(archive.extractfile(member).read())[CAPFLEET_FIELD]
                yield {"file_name": f"{shard.name}:{member.name[: -len('.json')]}", **row}
