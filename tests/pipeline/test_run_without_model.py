"""Runner, resume and output contract, with the model step switched off (`--captioner none`)."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from capfleet.config import ConfigError, RunConfig
from capfleet.merge import merge_shards
from capfleet.runners import shard_processor
from capfleet.runners.lifecycle import run_caption
from tests.image_zoo import OK, write_noise_images, write_zoo
from tests.pipeline.helpers import load_with_datasets, read_errors, read_rows


def config(inputs, out, **overrides) -> RunConfig:
    values = {"captioner": "none", "scorer": "none", "shard_size": 4, "workers": 2, "progress": False}
    values.update(overrides)
    return RunConfig(inputs=[str(i) for i in inputs], output=str(out), **values)


def test_every_bad_input_becomes_exactly_one_error_record(tmp_path):
    expected = write_zoo(tmp_path / "zoo")
    summary = run_caption(config([tmp_path / "zoo"], tmp_path / "out"))
    rows, errors = read_rows(tmp_path / "out"), read_errors(tmp_path / "out")
    ok_names = sorted(name for name, outcome in expected.items() if outcome == OK)
    assert sorted(row["source"].rsplit("/", 1)[1] for row in rows) == ok_names  # each once: lists, not sets
    assert sorted(error["source"].rsplit("/", 1)[1] for error in errors) == sorted(set(expected) - set(ok_names))
    assert all(error["error"] and error["key"] for error in errors)
    assert summary.stats.seen == len(expected)
    assert summary.stats.failed == len(errors)
    for row in rows:  # the image is copied byte for byte
        original = (tmp_path / "zoo" / row["source"].rsplit("/", 1)[1]).read_bytes()
        assert (tmp_path / "out" / f"{int(row['key']) // 4:05d}" / row["file_name"]).read_bytes() == original


def test_output_loads_with_datasets_and_keeps_original_captions(tmp_path):
    write_noise_images(tmp_path / "imgs", 6)
    (tmp_path / "imgs" / "img-004.txt").write_text("an original caption")
    run_caption(config([tmp_path / "imgs"], tmp_path / "out"))
    dataset = load_with_datasets(tmp_path / "out")
    assert len(dataset) == 6
    row = dataset[dataset["key"].index("000000004")]
    assert row["original_text"] == "an original caption" and row["text"] == "an original caption"
    assert row["image"].size == (48, 40)
    assert set(dataset.column_names) >= {"image", "text", "candidates", "scores", "original_text", "key", "source"}


class Crash(RuntimeError):
    pass


def test_crash_then_rerun_gives_each_image_exactly_once(tmp_path, monkeypatch):
    write_noise_images(tmp_path / "imgs", 10)
    calls = {"n": 0}
    real = shard_processor.ShardProcessor._caption

    def crash_in_second_shard(self, batch):
        calls["n"] += 1
        if batch[0].key >= "000000004":
            raise Crash("killed")
        return real(self, batch)

    monkeypatch.setattr(shard_processor.ShardProcessor, "_caption", crash_in_second_shard)
    with pytest.raises(Crash):
        run_caption(config([tmp_path / "imgs"], tmp_path / "out", batch_size=2))
    assert len(read_rows(tmp_path / "out")) == 4  # shard 0 finished, shard 1 left no trace
    assert not list((tmp_path / "out").glob(".tmp-*"))
    monkeypatch.setattr(shard_processor.ShardProcessor, "_caption", real)
    summary = run_caption(config([tmp_path / "imgs"], tmp_path / "out", batch_size=2))
    keys = [row["key"] for row in read_rows(tmp_path / "out")]
    assert sorted(keys) == [f"{i:09d}" for i in range(10)]
    assert summary.skipped == 4 and summary.shards_done_before == 1


def test_stale_staging_from_a_hard_kill_is_removed_and_not_loaded(tmp_path):
    write_noise_images(tmp_path / "imgs", 4)
    run_caption(config([tmp_path / "imgs"], tmp_path / "out"))
    stale = tmp_path / "out" / ".tmp-00001-deadbeef"
    stale.mkdir()
    (stale / "metadata.jsonl").write_text("{}\n")
    run_caption(config([tmp_path / "imgs"], tmp_path / "out"))
    assert not stale.exists()


def test_limit_run_then_full_run_completes_without_duplicates(tmp_path):
    write_noise_images(tmp_path / "imgs", 10)
    run_caption(config([tmp_path / "imgs"], tmp_path / "out", limit=5))
    assert [row["key"] for row in read_rows(tmp_path / "out")] == [f"{i:09d}" for i in range(5)]
    summary = run_caption(config([tmp_path / "imgs"], tmp_path / "out"))
    assert sorted(row["key"] for row in read_rows(tmp_path / "out")) == [f"{i:09d}" for i in range(10)]
    assert summary.skipped == 4  # shard 0 was complete; the cut-short shard 1 was redone


def test_changed_settings_refuse_unless_overwrite(tmp_path):
    write_noise_images(tmp_path / "imgs", 3)
    run_caption(config([tmp_path / "imgs"], tmp_path / "out"))
    with pytest.raises(ConfigError, match="shard_size: 4 -> 2"):
        run_caption(config([tmp_path / "imgs"], tmp_path / "out", shard_size=2))
    run_caption(config([tmp_path / "imgs"], tmp_path / "out", shard_size=2, overwrite=True))
    assert sorted((tmp_path / "out").glob("[0-9]*")) == [tmp_path / "out" / "00000", tmp_path / "out" / "00001"]
    assert len(read_rows(tmp_path / "out")) == 3


def test_foreign_non_empty_output_is_refused(tmp_path):
    write_noise_images(tmp_path / "imgs", 1)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "thesis.docx").write_text("precious")
    with pytest.raises(ConfigError, match="not empty"):
        run_caption(config([tmp_path / "imgs"], tmp_path / "out"))
    with pytest.raises(ConfigError, match="only ever deletes what a capfleet run wrote"):
        run_caption(config([tmp_path / "imgs"], tmp_path / "out", overwrite=True))
    assert (tmp_path / "out" / "thesis.docx").exists()


def test_merge_writes_one_file_and_the_dataset_still_loads_once(tmp_path):
    write_noise_images(tmp_path / "imgs", 9)
    run_caption(config([tmp_path / "imgs"], tmp_path / "out"))
    target, count = merge_shards(tmp_path / "out")
    assert count == 9 and target.name == "captions.jsonl"
    assert target.read_text().count('"file_name": "00002/') == 1
    assert len(load_with_datasets(tmp_path / "out")) == 9
    with pytest.raises(ValueError, match="twice"):
        merge_shards(tmp_path / "out", tmp_path / "out" / "metadata.jsonl")


def test_a_shard_that_fails_once_is_retried_without_duplicates(tmp_path, monkeypatch):
    write_noise_images(tmp_path / "imgs", 8)
    real = shard_processor.ShardProcessor._caption
    failed = set()

    def fail_first_attempt_midway(self, batch):
        key = batch[0].key
        if key == "000000006" and key not in failed:  # the second batch of shard 1: rows already staged
            failed.add(key)
            raise OSError("disk hiccup")
        return real(self, batch)

    monkeypatch.setattr(shard_processor.ShardProcessor, "_caption", fail_first_attempt_midway)
    summary = run_caption(config([tmp_path / "imgs"], tmp_path / "out", batch_size=2))
    assert failed == {"000000006"}
    assert sorted(row["key"] for row in read_rows(tmp_path / "out")) == [f"{i:09d}" for i in range(8)]
    assert summary.stats.captioned == 8 and summary.stats.failed == 0


def test_output_to_an_object_store_url(tmp_path):
    """gs:// and s3:// go through fsspec like memory:// does: upload, then mark done."""
    import fsspec

    write_noise_images(tmp_path / "imgs", 5)
    fs = fsspec.filesystem("memory")
    run_caption(config([tmp_path / "imgs"], "memory://bucket/run1"))
    assert sorted(p.rsplit("/", 1)[1] for p in fs.ls("/bucket/run1", detail=False)) == ["00000", "00001", "_capfleet"]
    rows = [line for line in fs.cat_file("/bucket/run1/00001/metadata.jsonl").decode().splitlines() if line]
    assert len(rows) == 1 and fs.exists("/bucket/run1/00001/000000004.jpg")
    assert fs.exists("/bucket/run1/_capfleet/completions/00001.json")
    summary = run_caption(config([tmp_path / "imgs"], "memory://bucket/run1"))
    assert summary.skipped == 5 and summary.stats.seen == 0


def test_truncated_jpegs_and_pngs_become_errors_and_whole_ones_are_copied(tmp_path):
    """A model-free run checks JPEG/PNG structure instead of decoding: cuts anywhere past the header
    must still become error records, and whole files (also with bytes after the JPEG end) rows."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    photo = io.BytesIO()
    Image.effect_noise((96, 64), 40).convert("RGB").save(photo, "JPEG", quality=90)
    jpeg = photo.getvalue()
    drawing = io.BytesIO()
    Image.effect_noise((96, 64), 40).convert("RGB").save(drawing, "PNG")
    png = drawing.getvalue()
    cases = {
        "whole.jpg": (jpeg, OK),
        "whole.png": (png, OK),
        "trailer.jpg": (jpeg + b"appended after the end marker" * 10, OK),
        "cut-90.jpg": (jpeg[: len(jpeg) * 9 // 10], "error"),
        "cut-60.png": (png[: len(png) * 6 // 10], "error"),
        "no-iend.png": (png[:-12], OK),  # Pillow decodes it: not proven whole, so decoded, as before
        "not-an-image.jpg": (b"plain text, no image here\n" * 40, "error"),
    }
    for name, (data, _) in cases.items():
        (folder / name).write_bytes(data)
    run_caption(config([folder], tmp_path / "out"))
    rows, errors = read_rows(tmp_path / "out"), read_errors(tmp_path / "out")
    named = {row["source"].rsplit("/", 1)[1]: row for row in rows}
    assert sorted(error["source"].rsplit("/", 1)[1] for error in errors) == sorted(
        name for name, (_, outcome) in cases.items() if outcome != OK
    )
    for name in ("whole.jpg", "whole.png", "trailer.jpg", "no-iend.png"):
        shard = f"{int(named[name]['key']) // 4:05d}"
        assert (tmp_path / "out" / shard / named[name]["file_name"]).read_bytes() == cases[name][0]


def test_model_free_checks_keep_the_size_guards_and_read_the_size_from_the_walk(tmp_path):
    """Whole JPEGs and PNGs are no longer opened by Pillow in a model-free run: the pixel cap and the
    aspect-ratio guard must still hold, with the size read from the frame header or IHDR."""
    from capfleet.stages.decode import decode

    folder = tmp_path / "imgs"
    folder.mkdir()
    files = {}
    for name, size, options in (
        ("baseline.jpg", (96, 64), {"quality": 90}),
        ("progressive.jpg", (90, 70), {"quality": 90, "progressive": True}),
        ("wide.png", (400, 16), {}),
        ("tall.jpg", (8, 300), {}),
    ):
        buffer = io.BytesIO()
        Image.effect_noise(size, 40).convert("RGB").save(buffer, "PNG" if name.endswith("png") else "JPEG", **options)
        files[name] = buffer.getvalue()
        (folder / name).write_bytes(files[name])
        checked = decode(files[name], 10**8, 384, max_aspect_ratio=1000, pixels=False)
        assert checked.image is None and (checked.width, checked.height) == size
    run_caption(config([folder], tmp_path / "out", max_pixels=6500))
    errors = {e["source"].rsplit("/", 1)[1]: e["error"] for e in read_errors(tmp_path / "out")}
    assert errors.keys() == {"wide.png", "tall.jpg"}  # 6400 and 2400 pixels pass the cap, ratios 25 and 37.5 do not
    assert all("extreme aspect ratio" in message for message in errors.values())
    run_caption(config([folder], tmp_path / "capped", max_pixels=6000))
    errors = {e["source"].rsplit("/", 1)[1]: e["error"] for e in read_errors(tmp_path / "capped")}
    assert "image too large: 96x64" in errors["baseline.jpg"] and "image too large: 90x70" in errors["progressive.jpg"]
