"""parquet output: OUT/SSSSS.parquet, one file per shard, written in row groups as rows arrive.

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

from capfleet.sample import Sample
from capfleet.sinks.base import ShardWriter
from capfleet.sinks.location import Location

ROW_GROUP_ROWS = 256
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


def read_rows(shard: Path) -> Iterator[dict[str, Any]]:
    """The rows of a published parquet shard without their image bytes."""
    import pyarrow.parquet as pq

    table = pq.read_table(shard, columns=[name for name in pq.read_schema(shard).names if name != "image"])
    for row in table.to_pylist():
        yield {"file_name": f"{shard.name}:{row['key']}", **row}
