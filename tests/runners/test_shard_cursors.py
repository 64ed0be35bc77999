"""Shards as the Source protocol plans and reads them: a shard's cursor belongs to its source, the reader's
pool fetches what the source yields, and shards in the layout capfleet wrote before cursors still resume."""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from capfleet.config import RunConfig
from capfleet.io.location import Location
from capfleet.runners.base import CAPTION, ShardTask, ShardWorker
from capfleet.runners.beam import element_to_shard
from capfleet.runners.lifecycle import run_caption
from capfleet.runners.state import RunState
from capfleet.sample import Item, Sample
from capfleet.sources.plan import ShardSpec
from tests.image_zoo import write_noise_images
from tests.pipeline.helpers import read_errors, read_rows
from tests.sources.tar_zoo import jpeg

KEYS = [f"{i:09d}" for i in range(5)]


def config(inputs, out, **overrides) -> RunConfig:
    values = {"captioner": "none", "scorer": "none", "shard_size": 2, "workers": 2, "progress": False}
    return RunConfig(inputs=[str(inputs)], output=str(out), **{**values, **overrides})


def folder_rows_before_cursors(manifest: list[dict], size: int) -> list[dict]:
    """Shards of an image folder as capfleet wrote them before cursors: {shard_id, items}."""
    return [{"shard_id": i // size, "items": manifest[i : i + size]} for i in range(0, len(manifest), size)]


def range_rows_before_cursors(path: str, rows: int, size: int) -> list[dict]:
    """Shards of a file list or a table as written before cursors: every range field, list-only ones included."""
    seek = {"seek_offset": 0, "seek_row": 0, "key_base": 0}
    return [
        {"shard_id": i // size, "origin": path, "start": i, "stop": min(i + size, rows), **seek}
        for i in range(0, rows, size)
    ]


def five_images(tmp_path, kind: str):
    """INPUT holding five images, and the keys a run gives them."""
    images = write_noise_images(tmp_path / "imgs", 5)
    if kind == "folder":
        return tmp_path / "imgs", KEYS
    if kind == "list":
        (tmp_path / "list.txt").write_text("".join(f"imgs/{image.name}\n" for image in images))
        return tmp_path / "list.txt", KEYS
    pq.write_table(pa.table({"image": [image.read_bytes() for image in images]}), tmp_path / "t.parquet")
    return tmp_path / "t.parquet", [f"t-{i:09d}" for i in range(5)]


@pytest.mark.parametrize("kind", ["folder", "list", "table"])
def test_shards_written_before_cursors_load_and_resume_without_duplicates(tmp_path, kind):
    inputs, keys = five_images(tmp_path, kind)
    out = tmp_path / "out"
    run_caption(config(inputs, out, limit=3))  # shard 0 done, shard 1 cut short at one image
    state = RunState(Location(str(out)))
    old = (
        folder_rows_before_cursors(state.manifest_rows(), 2)
        if kind == "folder"
        else range_rows_before_cursors(str(inputs), 5, 2)
    )
    shards = [element_to_shard(row) for row in old]  # what a Beam worker is handed
    assert [(shard.name, shard.planned) for shard in shards] == [("00000", 2), ("00001", 2), ("00002", 1)]
    pending = [shard for shard in shards if not state.is_done(shard)]
    assert [shard.name for shard in pending] == ["00001", "00002"]
    worker = ShardWorker(config(inputs, out))
    try:
        for shard in pending:
            worker.do(ShardTask(CAPTION, shard))
    finally:
        worker.close()
    assert [row["key"] for row in read_rows(out)] == keys
    assert state.missing_shards() == []
    again = run_caption(config(inputs, out))
    assert again.shards_done_before == 3 and again.stats.seen == 0
    assert [row["key"] for row in read_rows(out)] == keys


def test_a_shard_round_trips_through_its_json(tmp_path):
    shard = ShardSpec(3, None, {"origin": "a.tar", "start": 0, "stop": None})
    assert ShardSpec.from_json(shard.to_json()) == shard and shard.size_hint == 0


class TwoKindsOfUnits:
    """A source of its own: held samples, fetches to run, and a fetch that fails into an error record."""

    def listing(self) -> Iterator[dict]:
        return iter([{"images": 4}])

    def plan(self, rows, shard_size, limit=None) -> list[ShardSpec]:
        return [ShardSpec(0, 4, {"first": 0, "count": 4})]

    def read(self, shard, only=None) -> Iterator:
        for position in range(shard.cursor["first"], shard.cursor["count"]):
            item = Item(f"{position:09d}", f"mem://{position}")
            if position == 2:
                yield lambda item=item: Sample(item, error="read failed: gone")
            elif position % 2:
                yield lambda item=item, position=position: Sample(item, data=jpeg(position))
            else:
                yield Sample(item, data=jpeg(position))

    def opens(self, shard) -> Iterator[str]:
        return iter(())


def test_any_source_is_read_by_the_shard_processor_in_order(tmp_path):
    write_noise_images(tmp_path / "imgs", 1)
    cfg = config(tmp_path / "imgs", tmp_path / "out", shard_size=4)
    source = TwoKindsOfUnits()
    (shard,) = source.plan(source.listing(), 4)
    worker = ShardWorker(cfg, source=source)
    try:
        stats = worker.do(ShardTask(CAPTION, shard))
    finally:
        worker.close()
    assert (stats.seen, stats.captioned, stats.failed) == (4, 3, 1)
    assert [row["key"] for row in read_rows(tmp_path / "out")] == ["000000000", "000000001", "000000003"]
    assert [error["key"] for error in read_errors(tmp_path / "out")] == ["000000002"]
