"""Parquet files, `datasets.save_to_disk` folders and img2dataset URL parquet as INPUT."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from capfleet.config import RunConfig
from capfleet.runners.lifecycle import run_caption
from capfleet.sources.files import InputError
from tests.http_server import serve_folder
from tests.pipeline.helpers import read_errors, read_rows
from tests.sources.tar_zoo import jpeg


def config(inputs, out, **overrides) -> RunConfig:
    values = {"captioner": "none", "scorer": "none", "workers": 2, "progress": False, "shard_size": 4}
    values.update(overrides)
    return RunConfig(inputs=[str(i) for i in inputs], output=str(out), **values)


def test_parquet_with_image_bytes_is_cut_into_row_ranges(tmp_path):
    images = [jpeg(i) for i in range(7)]
    table = pa.table({"image": images, "caption": [f"c{i}" for i in range(7)], "other": list(range(7))})
    pq.write_table(table, tmp_path / "train.parquet", row_group_size=3)
    first = run_caption(config([tmp_path / "train.parquet"], tmp_path / "out", limit=6))
    assert first.shards == 2 and first.stats.seen == 6
    again = run_caption(config([tmp_path / "train.parquet"], tmp_path / "out"))
    assert again.shards_done_before == 1 and again.stats.seen == 3  # the cut-short shard 1 redone
    rows = read_rows(tmp_path / "out")
    assert [row["key"] for row in rows] == [f"train-{i:09d}" for i in range(7)]
    assert [row["original_text"] for row in rows] == [f"c{i}" for i in range(7)]
    assert (tmp_path / "out" / "00001" / "train-000000005.jpg").read_bytes() == images[5]


def test_hf_datasets_save_to_disk_and_parquet_exports_read_the_same(tmp_path):
    import datasets

    paths = []
    for i in range(5):
        paths.append(tmp_path / "imgs" / f"{i}.jpg")
        paths[-1].parent.mkdir(exist_ok=True)
        paths[-1].write_bytes(jpeg(i))
    dataset = datasets.Dataset.from_dict({"image": [str(p) for p in paths], "text": [f"t{i}" for i in range(5)]})
    dataset = dataset.cast_column("image", datasets.Image())
    dataset.save_to_disk(str(tmp_path / "saved"))
    dataset.to_parquet(str(tmp_path / "exported" / "data.parquet"))
    run_caption(config([tmp_path / "saved"], tmp_path / "from-arrow"))
    run_caption(config([tmp_path / "exported"], tmp_path / "from-parquet"))
    for out in ("from-arrow", "from-parquet"):
        rows = read_rows(tmp_path / out)
        assert [row["original_text"] for row in rows] == [f"t{i}" for i in range(5)], out
        assert (tmp_path / out / "00000" / f"{rows[2]['key']}.jpg").read_bytes() == paths[2].read_bytes()


def test_img2dataset_url_parquet_works_as_a_url_list(tmp_path):
    (tmp_path / "www").mkdir()
    for i in range(3):
        (tmp_path / "www" / f"{i}.jpg").write_bytes(jpeg(i))
    with serve_folder(tmp_path / "www") as base:
        urls = [f"{base}/0.jpg", f"{base}/1.jpg", f"{base}/missing.jpg", f"{base}/2.jpg"]
        table = pa.table({"url": urls, "caption": ["a", "b", "c", "d"], "key": ["k0", "k1", "k2", "k3"]})
        pq.write_table(table, tmp_path / "links.parquet")
        run_caption(config([tmp_path / "links.parquet"], tmp_path / "out"))
    rows, errors = read_rows(tmp_path / "out"), read_errors(tmp_path / "out")
    assert [row["source"] for row in rows] == [urls[0], urls[1], urls[3]]
    assert [row["original_text"] for row in rows] == ["a", "b", "d"]
    assert len(errors) == 1 and "404" in errors[0]["error"] and errors[0]["source"] == urls[2]


def test_columns_are_chosen_by_flag_or_refused_with_the_columns_found(tmp_path):
    table = pa.table({"pixels": [jpeg(0)], "blurb": ["hello"], "n": [1]})
    pq.write_table(table, tmp_path / "odd.parquet")
    run_caption(config([tmp_path / "odd.parquet"], tmp_path / "auto"))  # a binary column is taken as the image
    assert read_rows(tmp_path / "auto")[0]["original_text"] == ""
    run_caption(config([tmp_path / "odd.parquet"], tmp_path / "named", image_column="pixels", caption_column="blurb"))
    assert read_rows(tmp_path / "named")[0]["original_text"] == "hello"
    pq.write_table(pa.table({"a": [1], "b": ["x"]}), tmp_path / "none.parquet")
    with pytest.raises(InputError, match="columns: a, b"):
        run_caption(config([tmp_path / "none.parquet"], tmp_path / "none"))
    with pytest.raises(InputError, match="--caption-column 'nope'"):
        run_caption(config([tmp_path / "odd.parquet"], tmp_path / "bad", caption_column="nope"))


def test_the_cli_reports_input_mistakes_in_one_line(tmp_path):
    from typer.testing import CliRunner

    from capfleet.cli import app

    pq.write_table(pa.table({"a": [1], "b": ["x"]}), tmp_path / "none.parquet")
    (tmp_path / "x.tar").write_bytes(b"")
    for inputs, message in (([tmp_path / "none.parquet"], "columns: a, b"), ([tmp_path / "x.tar", tmp_path], "mix")):
        command = ["caption", *map(str, inputs), "-o", str(tmp_path / "out"), "--captioner", "none"]
        result = CliRunner().invoke(app, command)
        assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
