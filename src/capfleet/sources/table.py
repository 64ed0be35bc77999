"""Parquet files and `datasets.save_to_disk` folders as INPUT, cut into row-range shards
(formats/parquet.py reads their footers and row ranges).

The image column may hold bytes, the `{"bytes", "path"}` struct that `datasets` writes, or a
path/URL string (img2dataset's url/caption/key parquet is a URL list). Planning reads only file
footers (row counts), so a 100-million-row input is planned without touching its rows.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from functools import partial

from capfleet.formats.parquet import row_batches, table_shape
from capfleet.io.paths import filesystem, is_url
from capfleet.io.reading import ReadLimits
from capfleet.sample import Item, Sample
from capfleet.sources.files import InputError, fetch_item
from capfleet.sources.plan import RowRange, ShardSpec, plan_row_ranges
from capfleet.sources.units import Unit

TABLE_SUFFIXES = (".parquet", ".arrow")
IMAGE_COLUMNS = ("image", "img", "jpg", "jpeg", "png", "webp", "image_bytes", "url", "image_url", "path", "file_name")
CAPTION_COLUMNS = ("caption", "text", "txt", "original_text", "alt", "prompt")


def is_table_spec(spec: str) -> bool:
    """A .parquet/.arrow file, or a folder holding them at its top (or in data/), or a save_to_disk folder."""
    path = spec.split("?", 1)[0]
    if path.endswith(TABLE_SUFFIXES):
        return True
    if is_url(spec) and not spec.startswith("file://"):
        return False  # remote prefixes stay image prefixes unless they name a table file
    folder = path[len("file://") :] if path.startswith("file://") else path
    if not os.path.isdir(folder):
        return False
    names = os.listdir(folder)
    if "state.json" in names and any(name.endswith(".arrow") for name in names):
        return True
    data = os.path.join(folder, "data")
    candidates = names + (os.listdir(data) if os.path.isdir(data) else [])
    return any(name.endswith(".parquet") for name in candidates)


def table_files(spec: str) -> list[str]:
    fs, root = filesystem(spec)
    if not fs.isdir(root):
        return [spec]
    protocol = spec.split("://", 1)[0] + "://" if is_url(spec) else ""
    files = sorted(p for p in fs.find(root) if p.endswith(TABLE_SUFFIXES) and not os.path.basename(p).startswith("."))
    return [f"{protocol}{p}" if protocol else p for p in files]


def _is_image_type(field) -> bool:
    import pyarrow as pa  # present: the schema was read with it

    if pa.types.is_binary(field.type) or pa.types.is_large_binary(field.type):
        return True
    return pa.types.is_struct(field.type) and field.type.get_field_index("bytes") >= 0


def choose_columns(schema, path: str, image: str | None, caption: str | None) -> tuple[str, str | None]:
    names = list(schema.names)
    found = ", ".join(names)
    for given, flag in ((image, "--image-column"), (caption, "--caption-column")):
        if given is not None and given not in names:
            raise InputError(f"{flag} {given!r} is not a column of {path} (columns: {found})")
    if image is None:
        image = next((name for name in IMAGE_COLUMNS if name in names), None)
        image = image or next((field.name for field in schema if _is_image_type(field)), None)
    if image is None:
        raise InputError(f"no image column found in {path} (columns: {found}): pass --image-column NAME")
    if caption is None:
        caption = next((name for name in CAPTION_COLUMNS if name in names and name != image), None)
    return image, caption


class TableSource:
    """Rows of parquet/arrow files; `shard_size` rows per shard, never crossing a file."""

    def __init__(
        self,
        inputs: list[str],
        image_column: str | None = None,
        caption_column: str | None = None,
        limits: ReadLimits = ReadLimits(),  # noqa: B008 - frozen
    ):
        self.inputs = list(inputs)
        self.limits = limits  # for images the rows name by path or URL
        self.image_column = image_column
        self.caption_column = caption_column
        self._columns: dict[str, tuple[str, str | None]] = {}

    def listing(self) -> Iterator[dict]:
        for spec in self.inputs:
            files = table_files(spec)
            if not files:
                raise InputError(f"no .parquet or .arrow files in {spec}")
            for path in files:
                schema, rows = table_shape(path)
                choose_columns(schema, path, self.image_column, self.caption_column)  # fail before any work
                yield {"origin": path, "rows": rows}

    def plan(self, rows: Iterable[dict], shard_size: int, limit: int | None = None) -> list[ShardSpec]:
        ranges = plan_row_ranges(((row["origin"], row["rows"]) for row in rows), shard_size, limit)
        return [rows_of.shard(shard_id) for shard_id, rows_of in enumerate(ranges)]

    def read(self, shard: ShardSpec, only: set[str] | None = None) -> Iterator[Unit]:
        rows_of = RowRange.of(shard)
        image, caption = self._columns_of(rows_of.origin)
        columns = [image] if caption is None else [image, caption]
        rows = (row for row in self._rows(rows_of, image, caption, columns) if only is None or row[0] in only)
        return (_unit(row, self.limits) for row in rows)

    def opens(self, shard: ShardSpec) -> Iterator[str]:
        yield RowRange.of(shard).origin

    def _columns_of(self, path: str) -> tuple[str, str | None]:
        if path not in self._columns:
            schema, _ = table_shape(path)
            self._columns[path] = choose_columns(schema, path, self.image_column, self.caption_column)
        return self._columns[path]

    def _rows(self, rows_of: RowRange, image: str, caption: str | None, columns: list[str]) -> Iterator[tuple]:
        stem = os.path.splitext(os.path.basename(rows_of.origin))[0]
        folder = os.path.dirname(rows_of.origin)
        position = rows_of.start
        for batch in row_batches(rows_of.origin, columns, rows_of.start, rows_of.stop):
            values = batch.column(image).to_pylist()
            texts = batch.column(caption).to_pylist() if caption is not None else [None] * len(values)
            for value, text in zip(values, texts, strict=True):
                text = text.strip() or None if isinstance(text, str) else None
                yield f"{stem}-{position:09d}", f"{rows_of.origin}#{position}", value, text, folder
                position += 1


def _unit(row: tuple, limits: ReadLimits) -> Unit:
    """Bytes in the row are used as they are; a path (relative to the table's folder) or URL is to be read."""
    key, where, value, text, folder = row
    if isinstance(value, dict):
        value = value.get("bytes") or value.get("path")
    if isinstance(value, bytes):
        return Sample(Item(key, where, text), data=value)
    if not isinstance(value, str) or not value:
        return Sample(Item(key, where, text), error=f"no image in this row (value: {type(value).__name__})")
    source = value if is_url(value) or os.path.isabs(value) else os.path.join(folder, value)
    return partial(fetch_item, Item(key, source, text), limits=limits)
