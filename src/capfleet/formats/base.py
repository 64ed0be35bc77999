"""What every output format shares: stage a shard privately, publish it whole, or leave nothing.

A format says how one row is stored (`_add`) and what the finished shard is (`_finish`); staging,
the empty-shard case, publication through `Location` and cleanup live here, once. So do the
settings only some formats honour: each format's `check` refuses the others (`unsupported`).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from capfleet.errors import ConfigError
from capfleet.io.location import Location
from capfleet.sample import Sample

# What each shard published, so `--overwrite` deletes exactly that: `<shard>.json` holds the shard's
# entry in OUT and, for a folder, every file in it.
OUTPUTS_DIR = "_capfleet/outputs"


def output_record(name: str) -> str:
    return f"{OUTPUTS_DIR}/{name}.json"


def recorded_files(location: Location, name: str) -> set[str]:
    """Paths (relative to OUT) that shard `name` has ever published; empty when it published nothing."""
    if not location.exists(output_record(name)):
        return set()
    return set(json.loads(location.read_text(output_record(name)))["files"])


def unrecorded_paths(location: Location, entry: str, recorded: set[str]) -> list[str]:
    """Paths at or under top-level `entry` of OUT that are not in `recorded` (empty: all of it is ours)."""
    if entry not in recorded and not any(path.startswith(f"{entry}/") for path in recorded):
        return [entry] if location.exists(entry) else []
    root = location.path(entry).rstrip("/")
    if not location.fs.isdir(root):
        return [] if entry in recorded or not location.exists(entry) else [entry]
    inside = (path.rstrip("/") for path in location.fs.find(root, withdirs=True))
    paths = [f"{entry}/{path[len(root) + 1 :]}" for path in inside if path != root]
    return [path for path in paths if path not in recorded]


# Flags one format honours: whether a run sets it, and which format that is (named in the refusal).
_ONE_FORMAT_FLAGS = {
    "--txt": (lambda config: config.txt != "none", "imagefolder"),
    "--no-images": (lambda config: not config.images, "parquet"),
    "--embeddings": (lambda config: config.embeddings, "imagefolder"),
}


def unsupported(config: Any, honours: tuple[str, ...] = ()) -> list[str]:
    """A format's check: one line for each one-format flag the run sets that this format does not honour."""
    return [
        f"{flag} needs --format {owner}"
        for flag, (is_set, owner) in _ONE_FORMAT_FLAGS.items()
        if flag not in honours and is_set(config)
    ]


class ForeignFilesError(ConfigError):
    """A shard's place in OUT holds files no capfleet run recorded: publishing would delete them."""


class ShardWriter(ABC):
    """One shard attempt. `write` rows, then `commit` (publish) or `abort` (discard)."""

    # A folder per shard (publish_dir), or a single file named `<shard><suffix>` (publish_file).
    suffix = ""

    def __init__(self, location: Location, name: str):
        self.location = location
        self.name = name
        self.count = 0
        self.embeddings: list[tuple[str, Any, Any]] = []  # written by formats that honour --embeddings
        self._staged: Path | None = None

    @property
    def output_name(self) -> str:
        return f"{self.name}{self.suffix}"

    @property
    def staged(self) -> Path:
        if self._staged is None:
            self._staged = self.location.staging_dir(self.name)
        return self._staged

    def keep_published(self) -> None:
        """Start from the shard as published (`--retry-errors` adds the retried rows to it)."""
        if not self.location.exists(self.output_name):
            return  # every image of the shard had failed: nothing was published
        if self.location.is_local:
            self.count += self._include(Path(self.location.path(self.output_name)))
            return
        copy = Path(tempfile.mkdtemp(prefix="capfleet-published-")) / self.output_name
        try:
            self.location.fs.get(self.location.path(self.output_name), str(copy), recursive=True)
            self.count += self._include(copy)
        finally:
            shutil.rmtree(copy.parent, ignore_errors=True)

    def write(self, record: dict[str, Any], sample: Sample) -> None:
        self._add(record, sample)
        self.count += 1

    def add_embeddings(self, key: str, image: Any, text: Any) -> None:
        """The scorer's embeddings of a written row's image and of its chosen caption."""
        self.embeddings.append((key, image, text))

    def commit(self) -> int:
        """Publish the shard (none when every image failed); returns rows written."""
        if self.count == 0:
            self.location.remove(self.output_name)  # a stale copy from an earlier, different attempt
            self.abort()
            return 0
        self._finish(self.staged)
        self._record_output()
        if self.suffix:
            self.location.publish_file(self.staged / self.output_name, self.output_name)
            shutil.rmtree(self.staged, ignore_errors=True)
        else:
            self.location.publish_dir(self.staged, self.output_name)
        self._staged = None
        return self.count

    def refuse_foreign_files(self) -> None:
        """Publishing replaces the shard's entry: never when someone else's files are in it.
        Checked before the shard is read, so no work is spent on a shard that cannot be published."""
        foreign = unrecorded_paths(self.location, self.output_name, recorded_files(self.location, self.name))
        if foreign:
            raise ForeignFilesError(
                f"{self.location.url} holds {', '.join(foreign[:5])}, which capfleet did not write, where shard "
                f"{self.name} goes: nothing was replaced; move it away and rerun"
            )

    def _record_output(self) -> None:
        """Before publishing, add what this attempt publishes to the shard's record (a union: a kill
        between this write and the publication leaves the earlier attempt's files recorded too)."""
        if self.suffix:
            files = {self.output_name}
        else:
            inside = (path.relative_to(self.staged).as_posix() for path in self.staged.rglob("*"))
            files = {f"{self.output_name}/{path}" for path in inside}
        files |= recorded_files(self.location, self.name)
        self.location.write_json(output_record(self.name), {"files": sorted(files)})

    def abort(self) -> None:
        self._close()
        if self._staged is not None:
            shutil.rmtree(self._staged, ignore_errors=True)
            self._staged = None

    @abstractmethod
    def _add(self, record: dict[str, Any], sample: Sample) -> None:
        """Store one row (and its image) in the staging area."""

    @abstractmethod
    def _finish(self, staged: Path) -> None:
        """Complete the staged shard: metadata files, file footers."""

    @abstractmethod
    def _include(self, published: Path) -> int:
        """Copy a published shard's rows into the staging area; returns how many."""

    def _close(self) -> None:  # noqa: B027 - an optional hook, a no-op for formats without open files
        """Release open handles before an abort (formats that stream into one file)."""
