"""webdataset tars as INPUT: each tar (local, brace range, http(s), fsspec URL, `pipe:CMD`) is one
natural shard, planned from the list of tars alone; its samples are enumerated only when read.

Keys are `<tar name>-<position>`: stable across reruns and unique across tars.
"""

from __future__ import annotations

import itertools
import os
import re
import subprocess
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import IO

from capfleet.formats.webdataset import MAX_MEMBER_BYTES, ArchiveSample, TruncatedArchive, iter_archive
from capfleet.io.paths import is_http, local_path
from capfleet.io.reading import ReadLimits
from capfleet.sample import Item, Sample
from capfleet.sources.files import InputError
from capfleet.sources.plan import RowRange, ShardSpec

_BRACES = re.compile(r"\{([^{}]*)\}")
_ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz")


def expand_braces(spec: str) -> list[str]:
    """`a-{000..002}.tar` -> a-000.tar, a-001.tar, a-002.tar (zero padding kept); `{x,y}` alternatives."""
    match = _BRACES.search(spec)
    if match is None:
        return [spec]
    body = match.group(1)
    numeric = re.fullmatch(r"(\d+)\.\.(\d+)", body)
    if numeric:
        low, high = numeric.groups()
        options = [f"{n:0{len(low)}d}" for n in range(int(low), int(high) + 1)]
    else:
        options = body.split(",")
    head, tail = spec[: match.start()], spec[match.end() :]
    return [expanded for option in options for expanded in expand_braces(head + option + tail)]


def is_archive_spec(spec: str) -> bool:
    return spec.startswith("pipe:") or spec.split("?", 1)[0].endswith(_ARCHIVE_SUFFIXES)


def archive_stem(url: str) -> str:
    """The tar's name without suffix; for `pipe:CMD`, the last word of CMD that names a tar."""
    if url.startswith("pipe:"):
        words = [word for word in url[len("pipe:") :].split() if ".tar" in word or ".tgz" in word]
        url = words[-1] if words else "pipe"
    name = os.path.basename(url.split("?", 1)[0].rstrip("/"))
    for suffix in _ARCHIVE_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


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


class ArchiveSource:
    """webdataset shards; `--limit` reads tars in order until it has counted enough samples."""

    def __init__(self, inputs: list[str], limits: ReadLimits = ReadLimits()):  # noqa: B008 - frozen
        self.urls = [url for spec in inputs for url in expand_braces(spec)]
        self.max_bytes = limits.max_bytes or MAX_MEMBER_BYTES  # per member: the run's --max-bytes

    def listing(self) -> Iterator[dict]:
        seen: dict[str, str] = {}
        for url in self.urls:
            stem = archive_stem(url)
            if stem in seen:
                raise InputError(f"two input tars are both named {stem!r} ({seen[stem]}, {url}): keys would collide")
            seen[stem] = url
        return ({"origin": url} for url in self.urls)

    def plan(self, rows: Iterable[dict], shard_size: int, limit: int | None = None) -> list[ShardSpec]:
        """One shard per tar (shard_size does not apply: a tar is its own unit)."""
        shards: list[ShardSpec] = []
        remaining = limit
        for row in rows:
            if remaining is not None:
                if remaining <= 0:
                    break
                # Read no further than the limit needs: one sample past it says the tar goes on.
                count = sum(1 for _ in itertools.islice(self._samples(row["origin"], 0, None), remaining + 1))
                stop = None if count <= remaining else remaining
                remaining -= count
                shards.append(RowRange(row["origin"], 0, stop).shard(len(shards)))
            else:
                shards.append(RowRange(row["origin"]).shard(len(shards)))
        return shards

    def read(self, shard: ShardSpec, only: set[str] | None = None) -> Iterator[Sample]:
        """Samples with their bytes, in archive order (reading a tar is sequential; the reader decodes ahead)."""
        rows_of = RowRange.of(shard)
        samples = self._samples(rows_of.origin, rows_of.start, rows_of.stop)
        return samples if only is None else (sample for sample in samples if sample.key in only)

    def opens(self, shard: ShardSpec) -> Iterator[str]:
        yield RowRange.of(shard).origin

    def _samples(self, origin: str, start: int, stop: int | None) -> Iterator[Sample]:
        stem = archive_stem(origin)
        position = 0
        failure = None
        seen: set[str] = set()
        try:
            with open_archive(origin) as (stream, seekable):
                for group in iter_archive(stream, seekable, self.max_bytes):
                    if stop is not None and position >= stop:
                        return
                    if group.key in seen:
                        group.problems.append(f"duplicate key {group.key!r}: an earlier sample in this tar has it")
                    seen.add(group.key)
                    if position >= start:
                        yield _to_sample(stem, origin, position, group)
                    position += 1
        except (TruncatedArchive, OSError) as exc:
            failure = str(exc)
        if failure is not None and position >= start and (stop is None or position < stop):
            # The samples before the damage are kept; the damage itself is one error record.
            yield Sample(Item(f"{stem}-{position:06d}", origin), error=f"unreadable archive: {failure}")


def _to_sample(stem: str, origin: str, position: int, group: ArchiveSample) -> Sample:
    item = Item(f"{stem}-{position:06d}", f"{origin}#{group.key}", group.caption)
    error = group.error
    if error is not None:
        return Sample(item, error=error, archive_key=group.key)
    extension, data = group.image
    return Sample(
        item, data=data, extension=f".{extension.lower()}", archive_key=group.key, members=tuple(group.members)
    )
