"""webdataset tars as INPUT: brace ranges, captions, remote and piped tars, the hostile-archive zoo."""

from __future__ import annotations

import pytest

from capfleet.config import RunConfig
from capfleet.runners import shard_processor
from capfleet.runners.lifecycle import run_caption
from capfleet.sources.webdataset import archive_stem, expand_braces
from tests.http_server import serve_folder
from tests.pipeline.helpers import read_errors, read_rows
from tests.sources.tar_zoo import jpeg, write_hostile_tar, write_tar


def config(inputs, out, **overrides) -> RunConfig:
    values = {"captioner": "none", "scorer": "none", "workers": 2, "progress": False}
    values.update(overrides)
    return RunConfig(inputs=[str(i) for i in inputs], output=str(out), **values)


def write_parts(folder, parts: int = 3, per_part: int = 3) -> list:
    paths = []
    for part in range(parts):
        members = []
        for index in range(per_part):
            key = f"s{part}{index}"
            members += [(f"{key}.jpg", jpeg(part * 10 + index)), (f"{key}.txt", f"caption {part}.{index}".encode())]
        paths.append(write_tar(folder / f"part-{part:04d}.tar", members))
    return paths


def test_brace_expansion_and_names():
    assert expand_braces("s-{0008..0010}.tar") == ["s-0008.tar", "s-0009.tar", "s-0010.tar"]
    assert expand_braces("{a,b}-{0..1}.tar") == ["a-0.tar", "a-1.tar", "b-0.tar", "b-1.tar"]
    assert archive_stem("pipe:curl -s -f -L https://host/cc3m-0001.tar?x=1") == "cc3m-0001"


def test_a_brace_range_of_tars_gives_one_shard_per_tar_with_stable_keys(tmp_path):
    write_parts(tmp_path / "in")
    summary = run_caption(config([f"{tmp_path}/in/part-{{0000..0002}}.tar"], tmp_path / "out"))
    rows = read_rows(tmp_path / "out")
    assert summary.shards == 3 and len(rows) == 9
    assert [row["key"] for row in rows][2:4] == ["part-0000-000002", "part-0001-000000"]
    assert rows[4]["original_text"] == "caption 1.1" and rows[4]["source"].endswith("part-0001.tar#s11")
    manifest = (tmp_path / "out" / "_capfleet" / "manifest.jsonl").read_text().splitlines()
    assert len(manifest) == 3  # the plan lists tars, never their samples


def test_hostile_archive_zoo_gives_rows_and_reasons_and_writes_nothing_outside_out(tmp_path):
    expected = write_hostile_tar(tmp_path / "in" / "zoo.tar", huge_bytes=3 * 2**30)
    summary = run_caption(config([tmp_path / "in" / "zoo.tar"], tmp_path / "out" / "run", format="webdataset"))
    rows, errors = read_rows_of_tars(tmp_path / "out" / "run"), read_errors(tmp_path / "out" / "run")
    assert [row["source"].rsplit("#", 1)[1] for row in rows] == ["good0", "good1"]
    assert [row["original_text"] for row in rows] == ["a caption from txt", "a caption from json"]
    reasons = [error["error"] for error in errors]
    assert len(reasons) == len(expected) - 2 and summary.stats.seen == len(expected)
    for word in ("unsafe", "unsafe", "link", "device", "no image", "duplicate", "larger than --max-bytes"):
        assert sum(word in reason for reason in reasons) >= 1, word
    assert any("garbage" in error["source"] for error in errors)  # a .jpg that is no image: a decode error
    outside = {p.name for p in tmp_path.rglob("*") if not str(p).startswith(str(tmp_path / "out"))}
    assert not {"evil.jpg", "escape.jpg", "link.jpg", "device.jpg"} & outside
    assert not (tmp_path / "out" / "abs").exists() and not (tmp_path / "escape.jpg").exists()


def read_rows_of_tars(out):
    from capfleet.formats.webdataset import read_rows as tar_rows

    return [row for tar in sorted(out.glob("0*.tar")) for row in tar_rows(tar)]


def test_a_truncated_tar_keeps_the_samples_before_the_damage_plus_one_error(tmp_path):
    import tarfile

    (path,) = write_parts(tmp_path / "in", parts=1, per_part=4)
    with tarfile.open(path) as archive:
        third_image = archive.getmember("s02.jpg")
    path.write_bytes(path.read_bytes()[: third_image.offset_data + third_image.size // 2])
    run_caption(config([path], tmp_path / "out"))
    rows, errors = read_rows(tmp_path / "out"), read_errors(tmp_path / "out")
    assert [row["original_text"] for row in rows] == ["caption 0.0", "caption 0.1"]
    assert len(errors) == 1 and "unreadable archive" in errors[0]["error"]


def test_http_and_pipe_tars_read_like_local_ones(tmp_path):
    write_parts(tmp_path / "in", parts=2)
    with serve_folder(tmp_path / "in") as base:
        run_caption(config([f"{base}/part-{{0000..0001}}.tar"], tmp_path / "http"))
        run_caption(config([f"{base}/part-0009.tar"], tmp_path / "missing"))
    run_caption(config([f"pipe:cat {tmp_path}/in/part-{{0000..0001}}.tar"], tmp_path / "pipe"))
    run_caption(config([f"file://{tmp_path}/in/part-{{0000..0001}}.tar"], tmp_path / "local"))
    texts = [row["original_text"] for row in read_rows(tmp_path / "local")]
    assert len(texts) == 6
    assert [row["original_text"] for row in read_rows(tmp_path / "http")] == texts
    assert [row["original_text"] for row in read_rows(tmp_path / "pipe")] == texts
    assert [row["key"] for row in read_rows(tmp_path / "pipe")] == [row["key"] for row in read_rows(tmp_path / "local")]
    (error,) = read_errors(tmp_path / "missing")
    assert "404" in error["error"]


def test_limit_spans_tars_and_a_full_run_completes_the_cut_short_one(tmp_path):
    write_parts(tmp_path / "in")
    spec = f"{tmp_path}/in/part-{{0000..0002}}.tar"
    first = run_caption(config([spec], tmp_path / "out", limit=5))
    assert first.stats.seen == 5 and first.shards == 2
    again = run_caption(config([spec], tmp_path / "out"))
    assert again.shards_done_before == 1 and again.stats.seen == 6
    assert sorted(row["key"] for row in read_rows(tmp_path / "out")) == sorted(
        f"part-{part:04d}-{index:06d}" for part in range(3) for index in range(3)
    )


def test_a_crash_in_the_second_tar_then_a_rerun_gives_each_sample_once(tmp_path, monkeypatch):
    write_parts(tmp_path / "in")
    spec = f"{tmp_path}/in/part-{{0000..0002}}.tar"
    real = shard_processor.ShardProcessor._caption

    def crash(self, batch):
        if batch[0].key.startswith("part-0001"):
            raise RuntimeError("killed")
        return real(self, batch)

    monkeypatch.setattr(shard_processor.ShardProcessor, "_caption", crash)
    with pytest.raises(RuntimeError):
        run_caption(config([spec], tmp_path / "out", shard_retries=0))
    monkeypatch.setattr(shard_processor.ShardProcessor, "_caption", real)
    summary = run_caption(config([spec], tmp_path / "out"))
    keys = [row["key"] for row in read_rows(tmp_path / "out")]
    assert len(keys) == len(set(keys)) == 9 and summary.shards_done_before == 1


def test_two_tars_with_the_same_name_are_refused(tmp_path):
    from capfleet.sources.files import InputError

    write_parts(tmp_path / "a", parts=1)
    write_parts(tmp_path / "b", parts=1)
    with pytest.raises(InputError, match="both named"):
        run_caption(config([tmp_path / "a" / "part-0000.tar", tmp_path / "b" / "part-0000.tar"], tmp_path / "out"))


def test_fsspec_urls_for_tars_and_parquet(tmp_path):
    import fsspec
    import pyarrow as pa
    import pyarrow.parquet as pq

    (path,) = write_parts(tmp_path / "in", parts=1)
    memory = fsspec.filesystem("memory")
    memory.pipe_file("/wds-bucket/part-0000.tar", path.read_bytes())
    run_caption(config(["memory://wds-bucket/part-0000.tar"], tmp_path / "tar-out"))
    assert [row["original_text"] for row in read_rows(tmp_path / "tar-out")] == [f"caption 0.{i}" for i in range(3)]
    pq.write_table(pa.table({"image": [jpeg(1)], "text": ["remote"]}), tmp_path / "t.parquet")
    memory.pipe_file("/wds-bucket/t.parquet", (tmp_path / "t.parquet").read_bytes())
    run_caption(config(["memory://wds-bucket/t.parquet"], tmp_path / "table-out"))
    assert [row["original_text"] for row in read_rows(tmp_path / "table-out")] == ["remote"]
