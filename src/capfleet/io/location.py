"""OUT_DIR as a local folder or any fsspec URL (gs://, s3://), with atomic publication.

Locally a shard is staged in a hidden folder beside its final place and renamed into it, so a
reader sees the whole shard or none of it. Object stores have no directory rename: there the
shard is staged on local disk, uploaded, and only then marked done; the done-marker is the
commit point (a single object write, which GCS and S3 make atomic).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

from fsspec.implementations.local import LocalFileSystem

from capfleet.io.paths import filesystem

# A shard's staging and trash folders: `.tmp-00003-1a2b3c4d`, `.old-00003-1a2b3c4d`.
STAGING_NAME = re.compile(r"\.(tmp|old)-(\d{5,})-[0-9a-f]{8}")


def jsonl_text(rows: list[dict]) -> str:
    """One JSON object a line: how every `_capfleet` listing and record file is written."""
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def _unique() -> str:
    return uuid.uuid4().hex[:8]


class Location:
    def __init__(self, url: str | Path):
        self.url = str(url).rstrip("/")
        self.fs, self.root = filesystem(self.url)
        self.is_local = isinstance(self.fs, LocalFileSystem)

    def path(self, relative: str) -> str:
        return f"{self.root}/{relative}" if relative else self.root

    def exists(self, relative: str = "") -> bool:
        return self.fs.exists(self.path(relative))

    def list(self, relative: str = "") -> list[str]:
        """Names directly inside `relative` (empty when it does not exist)."""
        if not self.exists(relative):
            return []
        return sorted(entry.rstrip("/").rsplit("/", 1)[-1] for entry in self.fs.ls(self.path(relative), detail=False))

    def read_text(self, relative: str) -> str:
        return self.fs.cat_file(self.path(relative)).decode("utf-8")

    def write_text(self, relative: str, text: str) -> None:
        """Exists complete or not at all: temp name + rename locally, one PUT remotely."""
        target = self.path(relative)
        if not self.is_local:
            self.fs.pipe_file(target, text.encode("utf-8"))
            return
        os.makedirs(os.path.dirname(target), exist_ok=True)
        temp = f"{os.path.dirname(target)}/.{os.path.basename(target)}.{_unique()}"
        with open(temp, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(temp, target)

    def create_text(self, relative: str, text: str) -> str:
        """Write `text` unless `relative` exists; returns what is there now (ours, or the first writer's).

        Locally an atomic create-if-absent (a complete temp file hard-linked into place); object
        stores have no such write through fsspec, so there the text is written and read back:
        writers of identical bytes cannot harm each other, and a caller compares the result."""
        target = self.path(relative)
        if not self.is_local:
            if not self.fs.exists(target):
                self.fs.pipe_file(target, text.encode("utf-8"))
            return self.read_text(relative)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        temp = f"{os.path.dirname(target)}/.{os.path.basename(target)}.{_unique()}"
        with open(temp, "w", encoding="utf-8") as handle:
            handle.write(text)
        try:
            os.link(temp, target)
        except FileExistsError:
            pass
        finally:
            os.remove(temp)
        return self.read_text(relative)

    def write_json(self, relative: str, payload: dict) -> None:
        self.write_text(relative, json.dumps(payload, indent=1, sort_keys=True))

    def write_lines(self, relative: str, rows: list[dict]) -> None:
        self.write_text(relative, jsonl_text(rows))

    def read_lines(self, relative: str) -> list[dict]:
        """The rows `write_lines` wrote (blank lines skipped)."""
        return [json.loads(line) for line in self.read_text(relative).splitlines() if line.strip()]

    def remove(self, relative: str) -> None:
        if self.exists(relative):
            self.fs.rm(self.path(relative), recursive=True)

    def staging_dir(self, name: str) -> Path:
        """A unique local folder for one shard attempt.

        Locally it is hidden (dot name, skipped by dataset loaders) and beside the final folder,
        so publishing is a rename; unique names keep duplicate attempts (a Beam retry) apart.
        """
        if self.is_local:
            path = Path(self.root) / f".tmp-{name}-{_unique()}"
            path.mkdir(parents=True)
            return path
        return Path(tempfile.mkdtemp(prefix=f"capfleet-{name}-"))

    def publish_dir(self, staged: Path, name: str) -> None:
        """Replace folder `name` with `staged`, or raise: the caller marks the shard done only after.

        Two attempts of the same shard (a Beam retry, speculative execution) write the same
        files, so whichever lands last is the shard; a failed rename puts the old folder back.
        """
        if not self.is_local:
            self._upload_replacing(staged, name)
            return
        final = Path(self.path(name))
        trash = final.with_name(f".old-{name}-{_unique()}")
        try:
            final.rename(trash)
        except FileNotFoundError:
            pass
        try:
            staged.rename(final)
        except OSError:
            if final.exists():
                shutil.rmtree(staged, ignore_errors=True)  # a concurrent duplicate published it first
            else:
                if trash.exists() and not final.exists():
                    trash.rename(final)  # never leave the shard missing
                raise
        shutil.rmtree(trash, ignore_errors=True)

    def _upload_replacing(self, staged: Path, name: str) -> None:
        """Upload over the old copy, then delete what the new one does not have.

        Overwrite in place, never delete first: a duplicate attempt must not empty a shard that
        another attempt already marked done. Stray files of an earlier, different attempt (one
        that had more images) are removed after the upload, so the folder ends as `staged`.
        """
        target = self.path(name)
        self.fs.put(f"{staged}/", target, recursive=True)
        wanted = {path.relative_to(staged).as_posix() for path in staged.rglob("*") if path.is_file()}
        for remote in self.fs.find(target):
            if remote.lstrip("/")[len(target.lstrip("/")) + 1 :] not in wanted:
                self.fs.rm(remote)
        shutil.rmtree(staged, ignore_errors=True)

    def remove_stale_staging(self, shards: Callable[[str], bool] = lambda name: True) -> None:
        """Drop what a killed run left half-staged; the caller makes sure no other run is writing
        the shards `shards` accepts (a task array's task: its own shards only).

        Only names of capfleet's own staging pattern go, never another `.tmp-*` of the user's.
        """
        if not self.is_local:
            return  # object-store outputs stage on local disk, never in the bucket
        for name in self.list():
            staging = STAGING_NAME.fullmatch(name)
            if staging and shards(staging.group(2)):
                shutil.rmtree(self.path(name), ignore_errors=True)

    def publish_file(self, staged: Path, relative: str) -> None:
        """Put one finished file (a shard's tar or parquet) at `relative`, whole or not at all:
        a rename locally (staged beside it, same filesystem), a single upload remotely."""
        if self.is_local:
            os.replace(staged, self.path(relative))
            return
        self.fs.put_file(str(staged), self.path(relative))
        os.remove(staged)
