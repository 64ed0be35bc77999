"""Images named by path or URL: local folders, single images, file lists and fsspec prefixes."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from concurrent.futures import Executor
from dataclasses import dataclass

from capfleet.parallel import ordered_map
from capfleet.sample import Item, Sample
from capfleet.sources.plan import ShardSpec, plan_shards
from capfleet.sources.storage import filesystem, is_http, local_path, read_bytes

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
CAPTION_EXTENSIONS = (".txt", ".caption")
KEY_WIDTH = 9
METADATA_NAME = "metadata.jsonl"


class InputError(ValueError):
    """An INPUT that cannot be listed; the message names it and says what was expected."""


@dataclass(frozen=True)
class Listed:
    source: str
    original_text: str | None = None


def _extension(path: str) -> str:
    return os.path.splitext(path.split("?", 1)[0])[1].lower()


def is_image_path(path: str) -> bool:
    return _extension(path) in IMAGE_EXTENSIONS


def _metadata_captions(others: set[str], read_text) -> dict[str, str]:
    """Captions from imagefolder `metadata.jsonl` files (HF datasets, capfleet's own output)."""
    captions: dict[str, str] = {}
    for path in sorted(p for p in others if os.path.basename(p) == METADATA_NAME):
        folder = os.path.dirname(path)
        for line in read_text(path).splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            text = row.get("text", row.get("caption")) if isinstance(row, dict) else None
            if isinstance(text, str) and text.strip() and isinstance(row.get("file_name"), str):
                captions[f"{folder}/{row['file_name']}"] = text.strip()
    return captions


def _with_sidecar_captions(images: list[str], others: set[str], read_text) -> Iterator[Listed]:
    """Pair each image with its original caption: `name.txt`/`name.caption` beside it, else the
    `text` of its row in an imagefolder metadata.jsonl."""
    from_metadata = _metadata_captions(others, read_text)
    for image in images:
        stem = os.path.splitext(image)[0]
        caption = from_metadata.get(image)
        for ext in CAPTION_EXTENSIONS:
            if stem + ext in others:
                caption = read_text(stem + ext).strip() or None
                break
        yield Listed(image, caption)


def _read_local_text(path: str) -> str:
    with open(path, encoding="utf-8", errors="replace") as handle:
        return handle.read()


def _list_local_dir(root: str) -> Iterator[Listed]:
    images: list[str] = []
    others: set[str] = set()
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
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
    others = {p for p in paths if p.endswith(CAPTION_EXTENSIONS) or p.endswith("/" + METADATA_NAME)}

    def read_text(path: str) -> str:
        return fs.cat_file(path).decode("utf-8", errors="replace")

    for listed in _with_sidecar_captions(images, others, read_text):
        yield Listed(f"{protocol}://{listed.source}", listed.original_text)


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


def list_input(spec: str) -> Iterator[Listed]:
    """Every image one INPUT names, in a deterministic (sorted) order."""
    local = local_path(spec)
    if local is not None:
        if os.path.isdir(local):
            yield from _list_local_dir(local)
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
    return {stem + ext for ext in CAPTION_EXTENSIONS if os.path.exists(stem + ext)}


class FileSource:
    """A source whose items are individually addressable files or URLs."""

    def __init__(self, inputs: list[str]):
        self.inputs = list(inputs)

    def items(self) -> Iterator[Item]:
        """All inputs in order, each sorted; a source named twice is kept once."""
        seen: set[str] = set()
        index = 0
        for spec in self.inputs:
            for listed in list_input(spec):
                if listed.source in seen:
                    continue
                seen.add(listed.source)
                yield Item(f"{index:0{KEY_WIDTH}d}", listed.source, listed.original_text)
                index += 1

    def listing(self) -> Iterator[Item]:
        """`items()`, refusing a listing without a single image (an empty or mistyped folder)."""
        items = self.items()
        first = next(items, None)
        if first is None:
            kinds = ", ".join(sorted(ext[1:] for ext in IMAGE_EXTENSIONS))
            raise InputError(f"nothing to caption in {', '.join(self.inputs)}: no image files ({kinds}) found")
        yield first
        yield from items

    def plan(self, shard_size: int, limit: int | None = None) -> list[ShardSpec]:
        return plan_shards(self.items(), shard_size, limit)

    def read(self, shard: ShardSpec, executor: Executor, window: int) -> Iterator[Sample]:
        """The shard's samples with their bytes, fetched in parallel, in shard order."""
        return ordered_map(_fetch, shard.items, executor, window)


def _fetch(item: Item) -> Sample:
    try:
        return Sample(item, data=read_bytes(item.source))
    except OSError as exc:
        return Sample(item, error=f"read failed: {exc}")
    except Exception as exc:  # any backend error becomes this sample's error record
        return Sample(item, error=f"read failed: {type(exc).__name__}: {exc}")


def open_source(inputs: list[str]) -> FileSource:
    """The source for a run's INPUTs (later: webdataset shards, HF datasets)."""
    return FileSource(inputs)
