"""Every --format end to end (model switched off unless the test needs candidates), read back by
the libraries users read them with, through merge, resume and a crash."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile

import pytest

from capfleet.config import ConfigError, RunConfig
from capfleet.merge import merge_shards
from capfleet.runners import shard_processor
from capfleet.runners.lifecycle import run_caption
from tests.image_zoo import write_noise_images, write_zoo
from tests.pipeline.helpers import load_with_datasets, read_errors, read_rows


def config(inputs, out, **overrides) -> RunConfig:
    values = {"captioner": "none", "scorer": "none", "shard_size": 4, "workers": 2, "progress": False}
    values.update(overrides)
    return RunConfig(inputs=[str(i) for i in inputs], output=str(out), **values)


def test_webdataset_output_is_read_by_the_webdataset_library(tmp_path):
    import webdataset as wds

    images = write_noise_images(tmp_path / "imgs", 6)
    (tmp_path / "imgs" / "img-002.txt").write_text("an original caption")
    run_caption(config([tmp_path / "imgs"], tmp_path / "out", format="webdataset"))
    assert sorted(p.name for p in tmp_path.joinpath("out").glob("0*")) == ["00000.tar", "00001.tar"]
    samples = list(wds.WebDataset(str(tmp_path / "out" / "{00000..00001}.tar"), shardshuffle=False))
    assert [s["__key__"] for s in samples] == [f"{i:09d}" for i in range(6)]
    assert [s["jpg"] for s in samples] == [p.read_bytes() for p in images]  # byte for byte
    meta = json.loads(samples[2]["json"])["capfleet"]
    assert samples[2]["txt"].decode() == "an original caption" == meta["original_text"] == meta["text"]
    assert meta["key"] == "000000002" and meta["source"] == str(images[2])


def test_parquet_output_loads_with_datasets_and_pyarrow_and_no_images_is_a_sidecar(tmp_path):
    import datasets
    import pyarrow.parquet as pq

    images = write_noise_images(tmp_path / "imgs", 5)
    run_caption(config([tmp_path / "imgs"], tmp_path / "out", format="parquet"))
    loaded = datasets.load_dataset("parquet", data_files=str(tmp_path / "out" / "*.parquet"), split="train")
    assert loaded["key"] == [f"{i:09d}" for i in range(5)]
    assert loaded[3]["image"].size == (48, 40)
    table = pq.read_table(tmp_path / "out" / "00001.parquet")
    assert table.column("image").to_pylist()[0]["bytes"] == images[4].read_bytes()
    run_caption(config([tmp_path / "imgs"], tmp_path / "sidecar", format="parquet", images=False))
    sidecar = pq.read_table(tmp_path / "sidecar" / "00000.parquet")
    assert "image" not in sidecar.column_names and sidecar.column("source").to_pylist()[0] == str(images[0])


def test_artifacts_are_named_by_the_sha256_of_the_image_bytes(tmp_path):
    images = write_noise_images(tmp_path / "imgs", 3)
    run_caption(config([tmp_path / "imgs"], tmp_path / "out", format="artifacts"))
    for image in images:
        digest = hashlib.sha256(image.read_bytes()).hexdigest()
        assert (tmp_path / "out" / "00000" / f"{digest}.jpg").read_bytes() == image.read_bytes()
        assert json.loads((tmp_path / "out" / "00000" / f"{digest}.json").read_text())["source"] == str(image)


def test_txt_beside_each_image_and_the_imagefolder_loader_still_reads_it(tmp_path, tiny_blip, tiny_clip):
    write_noise_images(tmp_path / "imgs", 3)
    models = {"captioner": str(tiny_blip), "scorer": str(tiny_clip), "candidates": 3, "max_new_tokens": 5}
    run_caption(config([tmp_path / "imgs"], tmp_path / "best", txt="best", **models))
    run_caption(config([tmp_path / "imgs"], tmp_path / "all", txt="all", **models))
    rows = {row["key"]: row for row in load_with_datasets(tmp_path / "all")}
    assert len(load_with_datasets(tmp_path / "best")) == 3 and len(rows) == 3
    for key, row in rows.items():
        assert (tmp_path / "best" / "00000" / f"{key}.txt").read_text() == " ".join(row["text"].split()) + "\n"
        lines = (tmp_path / "all" / "00000" / f"{key}.txt").read_text().splitlines()
        by_score = sorted(zip(row["scores"], row["candidates"], strict=True), key=lambda pair: -pair[0])
        assert lines == [" ".join(text.split()) for _, text in by_score] and lines[0] == " ".join(row["text"].split())


@pytest.mark.parametrize("output_format", ["imagefolder", "webdataset", "parquet", "artifacts"])
def test_merge_and_resume_cover_every_format(tmp_path, output_format):
    expected = write_zoo(tmp_path / "zoo")
    first = run_caption(config([tmp_path / "zoo"], tmp_path / "out", format=output_format, limit=6))
    again = run_caption(config([tmp_path / "zoo"], tmp_path / "out", format=output_format))
    assert first.stats.seen == 6 and again.skipped == 4  # shard 0 done; the cut-short shard 1 was redone
    target, count = merge_shards(tmp_path / "out")
    rows = [json.loads(line) for line in target.read_text().splitlines()]
    errors = read_errors(tmp_path / "out")
    assert count == len(rows) and len({row["key"] for row in rows}) == count
    assert count + len(errors) == len(expected)  # one row or one error record per input, never both


@pytest.mark.parametrize("output_format", ["webdataset", "parquet", "artifacts"])
def test_a_crash_mid_shard_publishes_nothing_and_a_rerun_completes(tmp_path, monkeypatch, output_format):
    write_noise_images(tmp_path / "imgs", 8)
    real = shard_processor.ShardProcessor._caption

    def crash_in_second_shard(self, batch):
        if batch[0].key >= "000000005":
            raise KeyboardInterrupt
        return real(self, batch)

    monkeypatch.setattr(shard_processor.ShardProcessor, "_caption", crash_in_second_shard)
    with pytest.raises(KeyboardInterrupt):
        run_caption(config([tmp_path / "imgs"], tmp_path / "out", format=output_format, batch_size=1))
    published = sorted(p.name for p in (tmp_path / "out").iterdir() if p.name[0].isdigit())
    assert len(published) == 1 and published[0].startswith("00000")
    assert not list((tmp_path / "out").glob(".tmp-*"))
    monkeypatch.setattr(shard_processor.ShardProcessor, "_caption", real)
    summary = run_caption(config([tmp_path / "imgs"], tmp_path / "out", format=output_format, batch_size=1))
    _, count = merge_shards(tmp_path / "out")
    assert count == 8 and summary.skipped == 4


def test_webdataset_output_keeps_every_original_member_byte_for_byte(tmp_path):
    tar_path = tmp_path / "in" / "part-0.tar"
    tar_path.parent.mkdir()
    image = write_noise_images(tmp_path / "imgs", 1)[0].read_bytes()
    members = {"a/x1.jpg": image, "a/x1.cls": b"7", "a/x1.txt": b"old caption", "a/x1.json": b'{"width": 48}'}
    with tarfile.open(tar_path, "w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    run_caption(config([tar_path], tmp_path / "out", format="webdataset"))
    with tarfile.open(tmp_path / "out" / "00000.tar") as archive:
        out = {member.name: archive.extractfile(member).read() for member in archive}
    assert out["a/x1.jpg"] == image and out["a/x1.cls"] == b"7"
    assert out["a/x1.txt"] == b"old caption"  # no captioner: the original caption is the chosen one
    meta = json.loads(out["a/x1.json"])
    assert meta["width"] == 48 and meta["capfleet"]["original_text"] == "old caption"


def test_format_options_that_do_not_fit_are_refused():
    with pytest.raises(ConfigError, match="--txt needs"):
        RunConfig(["x"], "o", format="parquet", txt="best").validate()
    with pytest.raises(ConfigError, match="--no-images needs"):
        RunConfig(["x"], "o", format="webdataset", images=False).validate()
    with pytest.raises(ConfigError, match="--format must be"):
        RunConfig(["x"], "o", format="csv").validate()


def _outage_then_recovery(tmp_path, run, output_format):
    """A list whose images 1 and 4 are missing at first (an outage), then appear."""
    images = write_noise_images(tmp_path / "imgs", 6)
    (tmp_path / "list.txt").write_text("".join(f"{p}\n" for p in images))
    held_back = {1: images[1].read_bytes(), 4: images[4].read_bytes()}
    for index in held_back:
        images[index].unlink()
    run(config([tmp_path / "list.txt"], tmp_path / "out", format=output_format, shard_size=3))
    assert len(read_errors(tmp_path / "out")) == 2
    for index, data in held_back.items():
        images[index].write_bytes(data)
    return images


@pytest.mark.parametrize("output_format", ["imagefolder", "webdataset", "parquet", "artifacts"])
def test_retry_errors_adds_the_recovered_rows_and_drops_their_errors(tmp_path, output_format):
    _outage_then_recovery(tmp_path, run_caption, output_format)
    unchanged = run_caption(config([tmp_path / "list.txt"], tmp_path / "out", format=output_format, shard_size=3))
    assert unchanged.stats.seen == 0  # without the flag a finished shard stays as it is
    summary = run_caption(
        config([tmp_path / "list.txt"], tmp_path / "out", format=output_format, shard_size=3, retry_errors=True)
    )
    assert summary.stats.seen == 2 and summary.stats.captioned == 2  # only the failed images were read
    _, count = merge_shards(tmp_path / "out")
    keys = [json.loads(line)["key"] for line in (tmp_path / "out" / "captions.jsonl").read_text().splitlines()]
    assert count == 6 and sorted(keys) == [f"{i:09d}" for i in range(6)]
    assert read_errors(tmp_path / "out") == []
    marker = json.loads((tmp_path / "out" / "_capfleet" / "completions" / "00001.json").read_text())
    assert marker["captioned"] == 3 and marker["failed"] == 0


def test_retry_errors_on_beam(tmp_path):
    pytest.importorskip("apache_beam")
    from capfleet.runners.beam import run_beam

    _outage_then_recovery(tmp_path, run_beam, "webdataset")
    run_beam(config([tmp_path / "list.txt"], tmp_path / "out", format="webdataset", shard_size=3, retry_errors=True))
    _, count = merge_shards(tmp_path / "out")
    assert count == 6 and read_errors(tmp_path / "out") == []


@pytest.mark.slow  # two spawned worker processes
def test_retry_errors_with_gpus(tmp_path):
    _outage_then_recovery(tmp_path, run_caption, "imagefolder")
    summary = run_caption(config([tmp_path / "list.txt"], tmp_path / "out", shard_size=3, retry_errors=True, gpus=2))
    assert summary.stats.seen == 2 and summary.stats.captioned == 2  # only the failed images, on the workers
    assert len(read_rows(tmp_path / "out")) == 6 and read_errors(tmp_path / "out") == []


@pytest.mark.parametrize("output_format", ["webdataset", "parquet"])
def test_file_shards_upload_to_an_object_store_then_get_marked(tmp_path, output_format):
    import fsspec

    write_noise_images(tmp_path / "imgs", 5)
    out = f"memory://bucket-{output_format}/run"
    run_caption(config([tmp_path / "imgs"], out, format=output_format))
    fs = fsspec.filesystem("memory")
    suffix = ".tar" if output_format == "webdataset" else ".parquet"
    names = sorted(p.rsplit("/", 1)[1] for p in fs.ls(f"/bucket-{output_format}/run", detail=False))
    assert names == [f"00000{suffix}", f"00001{suffix}", "_capfleet"]
    local = tmp_path / f"00001{suffix}"
    local.write_bytes(fs.cat_file(f"/bucket-{output_format}/run/00001{suffix}"))
    from capfleet.formats import read_shard_rows

    assert [row["key"] for row in read_shard_rows(local, output_format)] == ["000000004"]
    assert run_caption(config([tmp_path / "imgs"], out, format=output_format)).skipped == 5
