"""Images named by path or URL: local folders, single images, file lists and fsspec prefixes."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import partial

from capfleet.io.paths import filesystem, is_http, local_path
from capfleet.io.reading import ReadLimits, read_bytes
from capfleet.metadata_jsonl import METADATA_NAME, parse_metadata_line
from capfleet.sample import Item, Sample, position_key
from capfleet.sources.plan import ShardSpec, plan_shards, shard_items
from capfleet.sources.units import Unit

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
CAPTION_EXTENSIONS = (".txt", ".caption")
JSON_EXTENSION = ".json"  # a sidecar with the image's fields (img2dataset writes one per image)
RUN_STATE_DIR = "_capfleet"  # a folder holding this is a capfleet output: never listed as input


class InputError(ValueError):
    """An INPUT that cannot be listed; the message names it and says what was expected."""


@dataclass(frozen=True)
class Listed:
    source: str
    original_text: str | None = None
    fields: dict | None = None


def _extension(path: str) -> str:
    return os.path.splitext(path.split("?", 1)[0])[1].lower()


def is_image_path(path: str) -> bool:
    return _extension(path) in IMAGE_EXTENSIONS


def _scalar_fields(row: dict) -> dict | None:
    """A json object's plain values (strings, numbers, booleans): what a --prompt template may use."""
    fields = {k: v for k, v in row.items() if k != "file_name" and isinstance(v, (str, int, float, bool))}
    return fields or None


def _metadata_rows(others: set[str], read_text) -> dict[str, dict]:
    """Rows of imagefolder `metadata.jsonl` files (HF datasets, capfleet's own output) by image path."""
    rows: dict[str, dict] = {}
    for path in sorted(p for p in others if os.path.basename(p) == METADATA_NAME):
        folder = os.path.dirname(path)
        for line in _read_or_empty(read_text, path).splitlines():
            row = parse_metadata_line(line)
            if row is not None:
                rows[f"{folder}/{row['file_name']}"] = row
    return rows


def _row_caption(row: dict) -> str | None:
    text = row.get("text", row.get("caption"))
    return text.strip() if isinstance(text, str) and text.strip() else None


def _sidecar_fields(read_text, path: str) -> dict | None:
    try:
        row = json.loads(_read_or_empty(read_text, path) or "null")
    except (ValueError, RecursionError):
        return None
    return _scalar_fields(row) if isinstance(row, dict) else None


def _with_sidecar_captions(images: list[str], others: set[str], read_text) -> Iterator[Listed]:
    """Pair each image with its original caption: `name.txt`/`name.caption` beside it, else the
    `text` of its row in an imagefolder metadata.jsonl. Its fields come from that row or from
    `name.json` beside it."""
    from_metadata = _metadata_rows(others, read_text)
    for image in images:
        stem = os.path.splitext(image)[0]
        row = from_metadata.get(image, {})
        caption, fields = _row_caption(row), _scalar_fields(row)
        for ext in CAPTION_EXTENSIONS:
            if stem + ext in others:
                caption = _read_or_empty(read_text, stem + ext).strip() or None
                break
        if stem + JSON_EXTENSION in others:
            fields = _sidecar_fields(read_text, stem + JSON_EXTENSION) or fields
        yield Listed(image, caption, fields)


def _read_local_text(path: str) -> str:
    """Regular files only (see io.reading.read_bytes): a FIFO named `x.txt` must not hang the listing."""
    return read_bytes(path).decode("utf-8", errors="replace")


def _read_or_empty(read_text, path: str) -> str:
    """A sidecar or metadata file that cannot be read gives no caption; the image is still listed."""
    try:
        return read_text(path)
    except OSError:
        return ""


def _holds_capfleet_run(folder: str) -> bool:
    return os.path.isdir(os.path.join(folder, RUN_STATE_DIR))


def _list_local_dir(root: str, exclude: str | None = None) -> Iterator[Listed]:
    """Images under `root`, skipping hidden folders, capfleet outputs and `exclude` (this run's output)."""
    images: list[str] = []
    others: set[str] = set()
    for folder, dirs, files in os.walk(root):
        dirs[:] = [
            d
            for d in dirs
            if not d.startswith(".")
            and os.path.join(folder, d) != exclude
            and not _holds_capfleet_run(os.path.join(folder, d))
        ]
        for name in files:
            if name.startswith("."):
                continue
            path = os.path.join(folder, name)
            if is_image_path(name):
                images.append(path)
            else:
                others.add(path)
    images.sort()
    yield from _with_sidecar_captions(images, others, _read_local_text)


def _list_remote_prefix(fs, url: str, root: str) -> Iterator[Listed]:
    protocol = url.split("://", 1)[0]
    paths = sorted(fs.find(root))
    images = [p for p in paths if is_image_path(p)]
    others = {p for p in paths if p.endswith((*CAPTION_EXTENSIONS, JSON_EXTENSION)) or p.endswith("/" + METADATA_NAME)}

    def read_text(path: str) -> str:
        return fs.cat_file(path).decode("utf-8", errors="replace")

    for listed in _with_sidecar_captions(images, others, read_text):
        yield Listed(f"{protocol}://{listed.source}", listed.original_text, listed.fields)


def parse_file_list(text: str, base: str | None) -> Iterator[Listed]:
    """Lines of `path-or-URL[<TAB>original caption]`; blank lines and `#` comments are skipped.

    Relative paths are taken relative to the list file, so a list travels with its images.
    """
    for line in text.splitlines():
        line = line.strip("\r\n")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        source, _, caption = line.partition("\t")
        source = source.strip()
        if base is not None and "://" not in source and not os.path.isabs(source):
            source = os.path.normpath(os.path.join(base, source))
        yield Listed(source, caption.strip() or None)


def list_input(spec: str, exclude: str | None = None) -> Iterator[Listed]:
    """Every image one INPUT names, in a deterministic (sorted) order; `exclude` is a local folder to skip."""
    local = local_path(spec)
    if local is not None:
        if os.path.isdir(local):
            yield from _list_local_dir(local, exclude)
        elif os.path.isfile(local):
            if is_image_path(local):
                yield from _with_sidecar_captions([local], _siblings(local), _read_local_text)
            else:
                yield from parse_file_list(_read_local_text(local), os.path.dirname(local))
        else:
            raise InputError(f"input not found: {spec} (expected a folder, an image, a file list or a URL)")
        return
    if is_http(spec):
        if is_image_path(spec) or _extension(spec) not in (".txt", ".lst", ".list"):
            yield Listed(spec)
        else:
            yield from parse_file_list(read_bytes(spec).decode("utf-8", errors="replace"), None)
        return
    fs, root = filesystem(spec)
    if fs.isdir(root):
        yield from _list_remote_prefix(fs, spec, root)
    elif is_image_path(spec):
        yield Listed(spec)
    elif fs.exists(root):
        yield from parse_file_list(fs.cat_file(root).decode("utf-8", errors="replace"), None)
    else:
        raise InputError(f"input not found: {spec}")


def _siblings(path: str) -> set[str]:
    stem = os.path.splitext(path)[0]
    return {stem + ext for ext in (*CAPTION_EXTENSIONS, JSON_EXTENSION) if os.path.exists(stem + ext)}


class FileSource:
    """A source whose items are individually addressable files or URLs."""

    def __init__(self, inputs: list[str], exclude: str | None = None, limits: ReadLimits = ReadLimits()):  # noqa: B008
        self.inputs = list(inputs)
        self.exclude = local_path(exclude) if exclude is not None else None
        self.limits = limits

    def items(self) -> Iterator[Item]:
        """All inputs in order, each sorted; a source named twice is kept once."""
        seen: set[str] = set()
        index = 0
        for spec in self.inputs:
            for listed in list_input(spec, self.exclude):
                if listed.source in seen:
                    continue
                seen.add(listed.source)
                yield Item(position_key(index), listed.source, listed.original_text, listed.fields)
                index += 1

    def listing(self) -> Iterator[dict]:
        """The manifest rows recorded at a run's start: every item (folders are listed in full).

        A listing without a single image (an empty or mistyped folder) is refused.
        """
        items = self.items()
        first = next(items, None)
        if first is None:
            kinds = ", ".join(sorted(ext[1:] for ext in IMAGE_EXTENSIONS))
            raise InputError(f"nothing to caption in {', '.join(self.inputs)}: no image files ({kinds}) found")
        yield first.to_json()
        yield from (item.to_json() for item in items)

    def plan(self, rows: Iterable[dict], shard_size: int, limit: int | None = None) -> list[ShardSpec]:
        return plan_shards(rows, shard_size, limit)

    def read(self, shard: ShardSpec, only: set[str] | None = None) -> Iterator[Unit]:
        return fetches(shard_items(shard), self.limits, only)

    def opens(self, shard: ShardSpec) -> Iterator[str]:
        return (item.source for item in shard_items(shard))


def fetches(items: Iterable[Item], limits: ReadLimits, only: set[str] | None = None) -> Iterator[Unit]:
    """A fetch of each item in order (`only`: of just these keys), for the reader's pool to run."""
    return (partial(fetch_item, item, limits=limits) for item in items if only is None or item.key in only)


def fetch_item(item: Item, limits: ReadLimits = ReadLimits()) -> Sample:  # noqa: B008 - frozen
    """The item's bytes (within `limits`), or the sample's error record saying why they could not be read."""
    try:
        return Sample(item, data=read_bytes(item.source, limits))
    except OSError as exc:
        return Sample(item, error=f"read failed: {exc}")
    except Exception as exc:  # any backend error becomes this sample's error record
        return Sample(item, error=f"read failed: {type(exc).__name__}: {exc}")
