"""What capfleet promises about the user's data, attacked through the CLI as a careless user,
a hostile file, a full disk, a second process or Ctrl-C would attack it."""

from __future__ import annotations

import errno
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from capfleet.cli import app
from capfleet.config import ConfigError, RunConfig
from capfleet.io.location import Location
from capfleet.runners.lifecycle import run_caption
from capfleet.runners.lock import RunLock
from capfleet.stages.decode import decode_image
from tests.image_zoo import write_noise_images
from tests.pipeline.helpers import read_errors, read_rows

runner = CliRunner()
NONE = ["--captioner", "none", "--shard-size", "4", "--workers", "2", "--no-progress"]


def caption(*args: object) -> object:
    return runner.invoke(app, ["caption", *map(str, args), *NONE])


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# -- --overwrite ------------------------------------------------------------------------
def test_overwrite_of_a_folder_without_a_run_deletes_nothing(tmp_path):
    write_noise_images(tmp_path / "imgs", 3)
    photos = tmp_path / "photos"
    (photos / "2023").mkdir(parents=True)
    (photos / "2023" / "beach.jpg").write_bytes(b"precious")
    (photos / ".old-backup").mkdir()
    (photos / ".old-backup" / "notes.txt").write_text("also precious")
    before = tree(photos)
    result = caption(tmp_path / "imgs", "-o", photos, "--overwrite")
    assert result.exit_code == 2 and "holds no capfleet run" in result.output
    assert tree(photos) == before


def test_overwrite_refuses_before_deleting_when_a_run_folder_holds_foreign_files(tmp_path):
    write_noise_images(tmp_path / "imgs", 6)
    out = tmp_path / "out"
    assert caption(tmp_path / "imgs", "-o", out).exit_code == 0
    (out / "2023").mkdir()
    (out / "2023" / "mine.jpg").write_bytes(b"not capfleet's")
    (out / ".tmp-mine").mkdir()  # looks like staging, but not capfleet's pattern
    before = tree(out)
    result = caption(tmp_path / "imgs", "-o", out, "--overwrite", "--shard-size", "2")
    assert result.exit_code == 2 and "did not write (.tmp-mine, 2023)" in result.output
    assert tree(out) == before  # not one file deleted, shards included


def test_overwrite_removes_exactly_the_run_and_its_merged_file(tmp_path):
    write_noise_images(tmp_path / "imgs", 6)
    out = tmp_path / "out"
    assert caption(tmp_path / "imgs", "-o", out).exit_code == 0
    assert runner.invoke(app, ["merge", str(out)]).exit_code == 0
    result = runner.invoke(app, ["caption", str(tmp_path / "imgs"), "-o", str(out), "--overwrite", *NONE[:2]])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["00000", "_capfleet"]  # shard size 1000 now
    assert len(read_rows(out)) == 6


@pytest.mark.parametrize("fmt", ["imagefolder", "webdataset", "parquet", "artifacts"])
def test_overwrite_refuses_user_files_named_like_shards_and_inside_shards(tmp_path, fmt):
    write_noise_images(tmp_path / "imgs", 6)
    out = tmp_path / "out"
    assert caption(tmp_path / "imgs", "-o", out, "--format", fmt).exit_code == 0
    shard_entry = next(p for p in sorted(out.iterdir()) if p.name.startswith("00000"))
    planted = [out / "00000.notes.txt", out / "00000.zip"]
    if shard_entry.is_dir():
        planted.append(shard_entry / "my-edits.txt")
    for path in planted:
        path.write_text("the user's")
    before = tree(out)
    result = caption(tmp_path / "imgs", "-o", out, "--format", fmt, "--overwrite", "--shard-size", "3")
    assert result.exit_code == 2 and "did not write" in result.output, result.output
    for path in planted:
        assert str(path.relative_to(out)) in result.output
    assert tree(out) == before  # not one file deleted, the run's own shards included
    for path in planted:  # moved away, the same command discards exactly the run
        path.unlink()
    result = caption(tmp_path / "imgs", "-o", out, "--format", fmt, "--overwrite", "--shard-size", "3")
    assert result.exit_code == 0, result.output
    assert sum(1 for p in out.iterdir() if p.name != "_capfleet") == 2


def test_overwrite_refuses_a_shard_folder_holding_a_user_folder(tmp_path):
    write_noise_images(tmp_path / "imgs", 4)
    out = tmp_path / "out"
    assert caption(tmp_path / "imgs", "-o", out).exit_code == 0
    (out / "00000" / "edits").mkdir()
    before = tree(out)
    result = caption(tmp_path / "imgs", "-o", out, "--overwrite", "--shard-size", "2")
    assert result.exit_code == 2 and "00000/edits" in result.output
    assert tree(out) == before and (out / "00000" / "edits").is_dir()


@pytest.mark.parametrize("fmt", ["imagefolder", "parquet"])
def test_resume_never_publishes_over_user_files_where_a_shard_goes(tmp_path, fmt):
    write_noise_images(tmp_path / "imgs", 8)
    out = tmp_path / "out"
    assert caption(tmp_path / "imgs", "-o", out, "--format", fmt, "--limit", "4").exit_code == 0
    if fmt == "imagefolder":
        (out / "00001").mkdir()
        (out / "00001" / "mine.txt").write_text("the user's")
    else:
        (out / "00001.parquet").write_text("the user's")
    before = tree(out)
    result = caption(tmp_path / "imgs", "-o", out, "--format", fmt)
    assert result.exit_code == 2 and "capfleet did not write" in result.output, result.output
    after = tree(out)
    after.pop("_capfleet/lock"), before.pop("_capfleet/lock")  # the resumed run took (and released) the lock
    assert after == before


@pytest.mark.parametrize("where", ["parent", "input inside", "list inside", "symlink"])
def test_output_holding_an_input_is_refused_and_nothing_is_touched(tmp_path, where):
    write_noise_images(tmp_path / "photos" / "2023", 3)
    photos = tmp_path / "photos"
    if where == "parent":  # -o photos/2023/.. is photos itself, which holds the input
        inputs, output = [photos / "2023"], photos / "2023" / ".."
    elif where == "input inside":
        inputs, output = [photos / "2023"], photos
    elif where == "list inside":
        (photos / "list.txt").write_text("2023/img-000.jpg\n")
        inputs, output = [photos / "list.txt"], photos
    else:  # OUT is a symlink to a folder that holds the input
        (tmp_path / "link").symlink_to(photos)
        inputs, output = [photos / "2023"], tmp_path / "link"
    before = tree(photos)
    for extra in ([], ["--overwrite"]):
        result = caption(*inputs, "-o", output, *extra)
        assert result.exit_code == 2 and "is also an input" in result.output, result.output
    assert tree(photos) == before


def test_output_equal_to_an_input_is_refused_and_the_input_untouched(tmp_path):
    write_noise_images(tmp_path / "demo", 4)
    before = tree(tmp_path / "demo")
    result = caption(tmp_path / "demo", "-o", tmp_path / "demo", "--overwrite")
    assert result.exit_code == 2 and "is also an input" in result.output
    assert tree(tmp_path / "demo") == before


def test_output_inside_the_input_is_never_captioned_as_input(tmp_path):
    write_noise_images(tmp_path / "photos", 12)
    assert caption(tmp_path / "photos", "-o", tmp_path / "photos" / "captions").exit_code == 0
    result = caption(tmp_path / "photos", "-o", tmp_path / "photos" / "captions2")
    assert result.exit_code == 0, result.output
    assert len(read_rows(tmp_path / "photos" / "captions")) == 12
    assert len(read_rows(tmp_path / "photos" / "captions2")) == 12
    sources = {row["source"] for row in read_rows(tmp_path / "photos" / "captions2")}
    assert not any("/captions/" in source for source in sources)


# -- one run at a time; publishing -------------------------------------------------------
def test_a_second_run_into_the_same_output_is_refused_while_the_first_holds_it(tmp_path):
    write_noise_images(tmp_path / "imgs", 3)
    out = tmp_path / "out"
    with RunLock(Location(out)):
        result = caption(tmp_path / "imgs", "-o", out)
        assert (
            result.exit_code == 2 and "another capfleet run" in result.output and f"pid {os.getpid()}" in result.output
        )
    assert caption(tmp_path / "imgs", "-o", out).exit_code == 0  # released: the same command now runs


def test_a_lease_on_an_object_store_refuses_a_second_run_and_expires(tmp_path):
    write_noise_images(tmp_path / "imgs", 2)
    url = "memory://bucket/leased"
    settings = {"captioner": "none", "scorer": "none", "progress": False}
    with RunLock(Location(url), ttl_s=60):
        with pytest.raises(ConfigError, match="another capfleet run"):
            run_caption(RunConfig(inputs=[str(tmp_path / "imgs")], output=url, **settings))
    dead = {"owner": "crashed-host pid 1 abcdef12", "expires": time.time() - 1, "ttl_s": 60}
    Location(url).write_json("_capfleet/lease.json", dead)  # its owner died without releasing
    summary = run_caption(RunConfig(inputs=[str(tmp_path / "imgs")], output=url, **settings))
    assert summary.stats.captioned == 2
    assert not Location(url).exists("_capfleet/lease.json")  # released at the end


def test_resume_keeps_a_users_tmp_folder_and_drops_only_capfleet_staging(tmp_path):
    write_noise_images(tmp_path / "imgs", 4)
    out = tmp_path / "out"
    assert caption(tmp_path / "imgs", "-o", out, "--limit", "2").exit_code == 0
    (out / ".tmp-00001-deadbeef").mkdir()
    result = caption(tmp_path / "imgs", "-o", out)
    assert result.exit_code == 0, result.output
    assert not (out / ".tmp-00001-deadbeef").exists() and len(read_rows(out)) == 4


def test_a_publish_that_fails_leaves_the_old_shard_and_no_marker(tmp_path, monkeypatch):
    write_noise_images(tmp_path / "imgs", 6)
    out = tmp_path / "out"
    assert caption(tmp_path / "imgs", "-o", out).exit_code == 0
    published = tree(out / "00000")
    (out / "_capfleet" / "completions" / "00000.json").unlink()  # shard 0 must be redone
    real_rename = Path.rename

    def rename(self, target):
        if self.name.startswith(".tmp-"):
            raise OSError(errno.EIO, "I/O error")
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", rename)
    result = caption(tmp_path / "imgs", "-o", out, "--shard-retries", "0")
    assert result.exit_code == 2 and "I/O error" in result.output
    assert not (out / "_capfleet" / "completions" / "00000.json").exists()
    assert tree(out / "00000") == published  # the previous copy is back in place
    monkeypatch.setattr(Path, "rename", real_rename)
    assert caption(tmp_path / "imgs", "-o", out).exit_code == 0
    assert sorted(row["key"] for row in read_rows(out)) == [f"{i:09d}" for i in range(6)]


# -- interrupted starts --------------------------------------------------------------------
def test_a_first_start_killed_while_writing_the_manifest_resumes(tmp_path):
    write_noise_images(tmp_path / "imgs", 3)
    state = tmp_path / "out" / "_capfleet"
    state.mkdir(parents=True)
    (state / "lock").write_text("")
    (state / ".manifest.jsonl.1a2b3c4d").write_text('{"key": "000000000", "sou')  # cut short
    result = caption(tmp_path / "imgs", "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert len(read_rows(tmp_path / "out")) == 3 and not (state / ".manifest.jsonl.1a2b3c4d").exists()


def test_a_disk_full_first_start_is_resumed_by_rerunning_it(tmp_path, monkeypatch):
    write_noise_images(tmp_path / "imgs", 3)
    real = Location.write_text

    def disk_full(self, relative, text):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Location, "write_text", disk_full)
    result = caption(tmp_path / "imgs", "-o", tmp_path / "out")
    assert result.exit_code == 2 and "No space left" in result.output
    monkeypatch.setattr(Location, "write_text", real)
    result = caption(tmp_path / "imgs", "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert len(read_rows(tmp_path / "out")) == 3


def test_a_start_whose_model_fails_to_load_leaves_the_output_folder_as_it_was(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    write_noise_images(tmp_path / "imgs", 2)
    out = tmp_path / "out"
    failed = runner.invoke(app, ["caption", str(tmp_path / "imgs"), "-o", str(out), "--no-progress"])
    assert failed.exit_code == 2
    assert not (out / "_capfleet" / "run.json").exists()
    retry = runner.invoke(
        app, ["caption", str(tmp_path / "imgs"), "-o", str(out), "--captioner", "builtin", "--scorer", "builtin",
              "--candidates", "2", "--no-progress"],
    )  # fmt: skip
    assert retry.exit_code == 0, retry.output
    assert len(read_rows(out)) == 2


# -- hostile files -----------------------------------------------------------------------
def test_a_fifo_and_a_device_become_error_records_and_the_run_finishes(tmp_path):
    write_noise_images(tmp_path / "imgs", 2)
    os.mkfifo(tmp_path / "imgs" / "pipe.jpg")
    os.symlink("/dev/zero", tmp_path / "imgs" / "z.jpg")
    os.mkfifo(tmp_path / "imgs" / "img-000.txt")  # a FIFO sidecar caption must not hang the listing
    started = time.perf_counter()
    result = caption(tmp_path / "imgs", "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert time.perf_counter() - started < 60
    errors = {Path(e["source"]).name: e["error"] for e in read_errors(tmp_path / "out")}
    assert set(errors) == {"pipe.jpg", "z.jpg"}
    assert all("not a regular file" in reason for reason in errors.values())
    assert len(read_rows(tmp_path / "out")) == 2


def test_files_over_max_bytes_are_refused_without_reading_them(tmp_path):
    write_noise_images(tmp_path / "imgs", 2)
    with open(tmp_path / "imgs" / "sparse.jpg", "wb") as handle:
        handle.truncate(1 << 30)  # 1 GB, no blocks on disk
    result = caption(tmp_path / "imgs", "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    [error] = read_errors(tmp_path / "out")
    assert error["source"].endswith("sparse.jpg") and "larger than --max-bytes 100000000" in error["error"]
    small = caption(tmp_path / "imgs", "-o", tmp_path / "out2", "--max-bytes", "100")
    assert small.exit_code == 0 and len(read_errors(tmp_path / "out2")) == 3


def test_a_deeply_nested_metadata_line_is_skipped_like_any_malformed_line(tmp_path):
    write_noise_images(tmp_path / "imgs", 2)
    rows = ["[" * 100_000 + "]" * 100_000, json.dumps({"file_name": "img-001.jpg", "text": "kept"})]
    (tmp_path / "imgs" / "metadata.jsonl").write_text("\n".join(rows) + "\n")
    result = caption(tmp_path / "imgs", "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert sorted(row["original_text"] for row in read_rows(tmp_path / "out")) == ["", "kept"]


def test_sixteen_bit_images_decode_without_float64_copies():
    pixels = np.random.default_rng(0).integers(0, 65535, (3000, 3000), dtype=np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)
    tracemalloc.start()
    image, _ = decode_image(buffer.getvalue(), max_pixels=10**9, min_side=384)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert image.mode == "RGB" and min(image.size) == 384
    assert peak < 20e6  # float64 of the full image alone would be 72 MB
    full, _ = decode_image(buffer.getvalue(), max_pixels=10**9, min_side=None)
    assert full.size == (3000, 3000) and full.getextrema()[0] == (0, 255)


# -- Ctrl-C ------------------------------------------------------------------------------
def test_ctrl_c_ends_a_run_whose_reader_is_stuck_within_seconds(tmp_path):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts connections, never answers: readers block until their timeout
    connected: list[socket.socket] = []
    accepted = threading.Event()
    threading.Thread(target=lambda: connected.append(silent.accept()[0]) or accepted.set(), daemon=True).start()
    try:
        (tmp_path / "list.txt").write_text(f"http://127.0.0.1:{silent.getsockname()[1]}/a.jpg\n")
        command = [sys.executable, "-m", "capfleet.cli", "caption", str(tmp_path / "list.txt"), "-o",
                   str(tmp_path / "out"), *NONE, "--http-timeout", "300"]  # fmt: skip
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert accepted.wait(120), "the reader never connected"  # it is now blocked on the silent server
        process.send_signal(signal.SIGINT)
        started = time.perf_counter()
        output, _ = process.communicate(timeout=120)
        assert time.perf_counter() - started < 60  # not the reader's 300 s timeout
    finally:
        for connection in [*connected, silent]:
            connection.close()
    assert process.returncode == 130 and "rerun the same command to resume" in output


def test_rerunning_a_finished_run_loads_no_models(tmp_path, monkeypatch):
    write_noise_images(tmp_path / "imgs", 2)
    args = ["caption", str(tmp_path / "imgs"), "-o", str(tmp_path / "out"), "--captioner", "builtin",
            "--candidates", "1", "--no-progress"]  # fmt: skip
    assert runner.invoke(app, args).exit_code == 0

    def no_loading(config):
        raise AssertionError("a finished run must not load models")

    monkeypatch.setattr("capfleet.runners.lifecycle.load_models", no_loading)
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert "(1 already done)" in again.output and "skipped (already done): 2" in again.output
