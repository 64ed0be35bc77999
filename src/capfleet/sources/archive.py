"""Read webdataset tars as samples, defensively: a tar from the internet is untrusted input.

Plain `tarfile` streaming rather than the `webdataset` library: we need a verdict on every
member (links, devices, absolute or `..` names, oversized members, a truncated archive) as an
error record with a reason, never an exception that ends the shard, and we never extract by
member name, so nothing can be written outside OUT_DIR whatever the archive says.
Samples are grouped by `__key__` (the member name up to its first dot in the last path part),
as webdataset does; a group's image is its first member with an image extension.
"""

from __future__ import annotations

import json
import re
import subprocess
import tarfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO

from capfleet.sources.storage import is_http, local_path

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


@contextmanager
def open_archive(url: str) -> Iterator[tuple[IO[bytes], bool]]:
    """The tar's byte stream and whether it can seek: local file, http(s), fsspec URL or `pipe:CMD`."""
    if url.startswith("pipe:"):
        process = subprocess.Popen(url[len("pipe:") :], shell=True, stdout=subprocess.PIPE)
        try:
            yield process.stdout, False
        finally:
            stopped_early = process.poll() is None  # a --limit read stops before the end
            process.stdout.close()
            if stopped_early:
                process.kill()
            process.wait()
        if process.returncode != 0 and not stopped_early:
            raise OSError(f"{url} exited with status {process.returncode}")
        return
    local = local_path(url)
    if local is not None:
        with open(local, "rb") as handle:
            yield handle, True
        return
    if is_http(url):
        import urllib.request

        request = urllib.request.Request(url, headers={"User-Agent": "capfleet"})
        with urllib.request.urlopen(request, timeout=60) as response:
            yield response, False
        return
    import fsspec

    with fsspec.open(url, "rb") as handle:
        yield handle, False
