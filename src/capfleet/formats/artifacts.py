"""artifacts output: OUT/SSSSS/<sha256 of the image bytes>.<ext> + <sha256>.json per image.

Content-addressed names deduplicate identical images and let other tools find an image's
captions from its bytes alone. Files are written by background threads, so the model never
waits on the disk; at most `IN_FLIGHT` images are held for writing at once.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from capfleet.formats.base import ShardWriter, unsupported
from capfleet.io.location import Location
from capfleet.sample import Sample

NAME = "artifacts"
EXTRA = None
REQUIRES: tuple[str, ...] = ()
Options = None
WRITER_THREADS = 2
IN_FLIGHT = 64


def _write_pair(folder: Path, digest: str, extension: str, data: bytes, record: dict[str, Any]) -> None:
    (folder / f"{digest}{extension}").write_bytes(data)
    (folder / f"{digest}.json").write_text(json.dumps({"sha256": digest, **record}, ensure_ascii=False))


class ArtifactsShardWriter(ShardWriter):
    def __init__(self, location: Location, name: str):
        super().__init__(location, name)
        self._pool: ThreadPoolExecutor | None = None
        self._pending: deque = deque()

    def _add(self, record: dict[str, Any], sample: Sample) -> None:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(WRITER_THREADS, thread_name_prefix="capfleet-write")
        data = sample.data or b""
        digest = hashlib.sha256(data).hexdigest()
        self._pending.append(self._pool.submit(_write_pair, self.staged, digest, sample.extension, data, record))
        while len(self._pending) > IN_FLIGHT:
            self._pending.popleft().result()  # re-raises a failed write: the shard is redone

    def _include(self, published: Path) -> int:
        for path in published.iterdir():
            shutil.copyfile(path, self.staged / path.name)
        return sum(1 for _ in published.glob("*.json"))

    def _finish(self, staged: Path) -> None:
        while self._pending:
            self._pending.popleft().result()
        self._close()

    def _close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._pending.clear()


def check(config: Any) -> list[str]:
    return unsupported(config)


def open(config: Any, location: Location, shard_name: str) -> ArtifactsShardWriter:  # noqa: A001 - the contract
    return ArtifactsShardWriter(location, shard_name)


def read_rows(shard: Path) -> Iterator[dict[str, Any]]:
    for path in sorted(shard.glob("*.json"), key=lambda p: json.loads(p.read_text())["key"]):
        row = json.loads(path.read_text())
        yield {"file_name": f"{shard.name}/{path.stem}", **row}
