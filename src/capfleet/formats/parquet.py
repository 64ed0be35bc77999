"""parquet: INPUT tables read by row range from their footers (arrow streams too); output
OUT/SSSSS.parquet, one file per shard, written in row groups as rows arrive.

Columns: the row fields (key, source, text, candidates, scores, original_text, captioner,
scorer) and `image` as the `{"bytes", "path"}` struct `datasets` uses, declared an Image in
the schema metadata so `datasets.load_dataset("parquet")` decodes it. `--no-images` leaves the
image out: a small sidecar to join onto the original dataset by key or source.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from capfleet.errors import require
from capfleet.formats.base import ShardWriter, unsupported
from capfleet.io.location import Location
from capfleet.io.paths import filesystem
from capfleet.sample import Sample

NAME = "parquet"
EXTRA = "parquet"
REQUIRES: tuple[str, ...] = ("pyarrow",)
Options = None
ROW_GROUP_ROWS = 256
_BATCH_ROWS = 1024  # rows per batch read from an INPUT table
_STRING_FIELDS = ("key", "source", "text", "original_text", "captioner", "scorer")


def _schema(images: bool):
    import pyarrow as pa

    fields = [pa.field(name, pa.string()) for name in _STRING_FIELDS]
    fields += [pa.field("candidates", pa.list_(pa.string())), pa.field("scores", pa.list_(pa.float64()))]
    features: dict[str, Any] = {name: {"dtype": "string", "_type": "Value"} for name in _STRING_FIELDS}
    # "Sequence" (not datasets 4's "List") so that datasets 3 reads it too
    features["candidates"] = {"feature": {"dtype": "string", "_type": "Value"}, "_type": "Sequence"}
    features["scores"] = {"feature": {"dtype": "float64", "_type": "Value"}, "_type": "Sequence"}
    if images:
        fields.append(pa.field("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])))
        features["image"] = {"_type": "Image"}
    metadata = {"huggingface": json.dumps({"info": {"features": features}})}
    return pa.schema(fields, metadata=metadata)


class ParquetShardWriter(ShardWriter):
    suffix = ".parquet"

    def __init__(self, location: Location, name: str, images: bool = True):
        super().__init__(location, name)
        self.images = images
        self.schema = _schema(images)
        self._rows: list[dict[str, Any]] = []
        self._writer = None

    def _add(self, record: dict[str, Any], sample: Sample) -> None:
        row = {name: record[name] for name in self.schema.names if name != "image"}
        if self.images:
            row["image"] = {"bytes": sample.data or b"", "path": f"{record['key']}{sample.extension}"}
        self._rows.append(row)
        if len(self._rows) >= ROW_GROUP_ROWS:
            self._flush()

    def _include(self, published: Path) -> int:
        import pyarrow.parquet as pq

        rows = 0
        for batch in pq.ParquetFile(published).iter_batches(batch_size=ROW_GROUP_ROWS):
            self._rows.extend(batch.to_pylist())
            rows += batch.num_rows
            self._flush()
        return rows

    def _flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self._writer is None:
            self._writer = pq.ParquetWriter(self.staged / self.output_name, self.schema)
        if self._rows:
            self._writer.write_table(pa.Table.from_pylist(self._rows, schema=self.schema))
            self._rows = []

    def _finish(self, staged: Path) -> None:
        self._flush()
        self._close()

    def _close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._rows = []


def _pyarrow():
    """pyarrow, for reading parquet and arrow INPUTs (as output, the registry checks the extra)."""
    require(REQUIRES, EXTRA, "parquet and arrow inputs")
    import pyarrow
    import pyarrow.parquet  # noqa: F401

    return pyarrow


def _open(path: str):
    fs, bare = filesystem(path)
    return fs.open(bare, "rb")


def table_shape(path: str) -> tuple[Any, int]:
    """The schema and row count of a parquet file (from its footer) or an arrow stream."""
    pa = _pyarrow()
    with _open(path) as handle:
        if path.endswith(".parquet"):
            metadata = pa.parquet.ParquetFile(handle).metadata
            return metadata.schema.to_arrow_schema(), metadata.num_rows
        reader = pa.ipc.open_stream(handle)
        return reader.schema, sum(batch.num_rows for batch in reader)


def row_batches(path: str, columns: list[str], start: int, stop: int) -> Iterator[Any]:
    """Record batches covering rows [start, stop), sliced exactly; parquet reads only the row groups it needs."""
    pa = _pyarrow()
    with _open(path) as handle:
        if path.endswith(".parquet"):
            parquet = pa.parquet.ParquetFile(handle)
            groups, offset, first = [], 0, None
            for index in range(parquet.metadata.num_row_groups):
                rows = parquet.metadata.row_group(index).num_rows
                if offset < stop and offset + rows > start:
                    groups.append(index)
                    first = offset if first is None else first
                offset += rows
            batches = parquet.iter_batches(batch_size=_BATCH_ROWS, row_groups=groups, columns=columns)
            offset = first or 0
        else:
            batches = (batch.select(columns) for batch in pa.ipc.open_stream(handle))
            offset = 0
        for batch in batches:
            low, high = max(start - offset, 0), min(stop - offset, batch.num_rows)
            if high > low:
                yield batch.slice(low, high - low)
            offset += batch.num_rows
            if offset >= stop:
                return


def check(config: Any) -> list[str]:
    return unsupported(config, honours=("--no-images",))


def open(config: Any, location: Location, shard_name: str) -> ParquetShardWriter:  # noqa: A001 - the contract
    return ParquetShardWriter(location, shard_name, config.images)


def read_rows(shard: Path) -> Iterator[dict[str, Any]]:
    """The rows of a published parquet shard without their image bytes."""
    import pyarrow.parquet as pq

    table = pq.read_table(shard, columns=[name for name in pq.read_schema(shard).names if name != "image"])
    for row in table.to_pylist():
        yield {"file_name": f"{shard.name}:{row['key']}", **row}
