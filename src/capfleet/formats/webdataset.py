"""webdataset: the tar layout both ways. Input tars are read defensively (`iter_archive`); output is
OUT/SSSSS.tar, one tar per shard, readable by the `webdataset` library (`WebDatasetShardWriter`).

Reading: plain `tarfile` streaming rather than the `webdataset` library: a tar from the internet is
untrusted input, so every member gets a verdict (links, devices, absolute or `..` names, oversized
members, a truncated archive) as an error record with a reason, never an exception that ends the
shard, and nothing is extracted by member name, so nothing can be written outside OUT_DIR.
Samples are grouped by `__key__` (the member name up to its first dot in the last path part),
as webdataset does; a group's image is its first member with an image extension.

Writing, each sample (`__key__` is the input tar's own key, else the capfleet key):
  KEY.<ext>   every original member, byte for byte (the image, .cls, .npy, ...) but txt and json
  KEY.txt     the chosen caption, UTF-8
  KEY.json    the original json member's fields, plus "capfleet": {key, source, text,
              candidates, scores, original_text, captioner, scorer}; the original txt caption
              survives as capfleet.original_text
Headers are fixed (mtime 0, mode 0644, no owner), so a redone shard is byte-identical.
"""

from __future__ import annotations

import json
import re
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from capfleet.formats.base import ShardWriter, unsupported
from capfleet.formats.tar_members import TarWriter
from capfleet.io.location import Location
from capfleet.sample import Sample

NAME = "webdataset"
EXTRA = None
REQUIRES: tuple[str, ...] = ()
Options = None
CAPFLEET_FIELD = "capfleet"
IMAGE_EXTENSIONS = frozenset({"jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff"})
# A member larger than this is refused unread (a 2 GB "image" would otherwise sit in memory).
MAX_MEMBER_BYTES = 256 * 1024 * 1024
_KEY_AND_EXTENSION = re.compile(r"^((?:.*/|)[^./]+)\.([^/]*)$")


@dataclass
class ArchiveSample:
    """One `__key__` group: its members in archive order, or why it cannot be used."""

    key: str
    members: list[tuple[str, bytes]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def image(self) -> tuple[str, bytes] | None:
        return next(((ext, data) for ext, data in self.members if ext.lower() in IMAGE_EXTENSIONS), None)

    @property
    def caption(self) -> str | None:
        """`txt`, else a `json` member's `caption` or `text` field."""
        members = dict(self.members)
        if "txt" in members:
            return members["txt"].decode("utf-8", errors="replace").strip() or None
        if "json" in members:
            try:
                meta = json.loads(members["json"])
            except ValueError:
                return None
            text = meta.get("caption", meta.get("text")) if isinstance(meta, dict) else None
            return text.strip() or None if isinstance(text, str) else None
        return None

    @property
    def error(self) -> str | None:
        if self.problems:
            return "; ".join(self.problems)
        if self.image is None:
            names = ", ".join(f"{self.key}.{ext}" for ext, _ in self.members) or "none"
            return f"no image member in sample {self.key} (members: {names})"
        return None


def _member_problem(member: tarfile.TarInfo, max_bytes: int) -> str | None:
    name = member.name
    if name.startswith("/") or ".." in name.split("/"):
        return f"unsafe member name {name!r} (absolute or '..')"
    if member.issym() or member.islnk():
        return f"member {name!r} is a link, not a file"
    if not member.isfile():
        return f"member {name!r} is a device, fifo or other special file"
    if member.size > max_bytes:
        return f"member {name!r} is {member.size:,} bytes, larger than --max-bytes {max_bytes}"
    return None


def _key_of(name: str) -> tuple[str, str] | None:
    match = _KEY_AND_EXTENSION.match(name)
    return (match.group(1), match.group(2)) if match else None


class TruncatedArchive(Exception):
    """The archive ended or broke mid-way; the samples before the damage were already yielded."""


def iter_archive(stream: IO[bytes], seekable: bool, max_bytes: int = MAX_MEMBER_BYTES) -> Iterator[ArchiveSample]:
    """Samples in archive order; raises TruncatedArchive after the last intact one."""
    try:
        archive = tarfile.open(fileobj=stream, mode="r:*" if seekable else "r|*")
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise TruncatedArchive(f"not a readable tar: {exc}") from None
    current: ArchiveSample | None = None
    try:
        while True:
            member = archive.next()
            archive.members = []  # tarfile keeps every header otherwise: memory would grow per sample
            if member is None:
                break
            if member.isdir():
                continue
            split = _key_of(member.name[2:] if member.name.startswith("./") else member.name)
            key, extension = split if split else (member.name, "")
            if current is None or current.key != key:
                if current is not None:
                    yield current
                current = ArchiveSample(key)
            problem = _member_problem(member, max_bytes) or (
                None if split else f"member {member.name!r} has no extension"
            )
            if problem:
                current.problems.append(problem)
                continue
            handle = archive.extractfile(member)
            current.members.append((extension, handle.read() if handle is not None else b""))
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise TruncatedArchive(f"archive damaged after {current.key if current else 'its start'}: {exc}") from None
    if current is not None:
        yield current


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


def check(config: Any) -> list[str]:
    return unsupported(config)


def open(config: Any, location: Location, shard_name: str) -> WebDatasetShardWriter:  # noqa: A001 - the contract
    return WebDatasetShardWriter(location, shard_name)


def read_rows(shard: Path) -> Iterator[dict[str, Any]]:
    """The capfleet rows of a published tar, in order."""
    with tarfile.open(shard) as archive:
        for member in archive:
            if member.name.endswith(".json"):
                row = json.loads(archive.extractfile(member).read())[CAPFLEET_FIELD]
                yield {"file_name": f"{shard.name}:{member.name[: -len('.json')]}", **row}
