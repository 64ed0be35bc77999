"""Pick the source for a run's INPUTs: webdataset tars, tables (parquet/arrow), or images and lists."""

from __future__ import annotations

from capfleet.io.reading import HTTP_TIMEOUT_S, ReadLimits
from capfleet.protocols import Source
from capfleet.sources.files import FileSource, InputError
from capfleet.sources.lists import ListSource, is_list_spec
from capfleet.sources.table import TableSource, is_table_spec
from capfleet.sources.webdataset import ArchiveSource, is_archive_spec


def open_source(inputs: list[str], config=None) -> Source:
    """All INPUTs of one run are of one kind; the source lists, plans and reads them.

    From `config` (a RunConfig, or None for listing only): `max_bytes` caps every read, and
    `http_timeout` bounds each download, and `output` (the run's own folder) is never listed as input.
    """
    limits = ReadLimits(getattr(config, "max_bytes", None), getattr(config, "http_timeout", HTTP_TIMEOUT_S))
    kinds = {"tars" if is_archive_spec(spec) else "tables" if is_table_spec(spec) else "images" for spec in inputs}
    if len(kinds) > 1:
        raise InputError(f"INPUTs mix {' and '.join(sorted(kinds))}: caption each kind in its own run")
    if kinds == {"tars"}:
        return ArchiveSource(inputs, limits)
    if kinds == {"tables"}:
        image = getattr(config, "image_column", None)
        caption = getattr(config, "caption_column", None)
        return TableSource(inputs, image, caption, limits)
    if all(is_list_spec(spec) for spec in inputs):
        return ListSource(inputs, limits)  # planned from line offsets: no item listing held in memory
    return FileSource(inputs, getattr(config, "output", None), limits)
