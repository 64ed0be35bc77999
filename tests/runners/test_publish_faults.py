"""Faults injected around publishing a shard: exactly-once rows and no stray files, whatever happens."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import fsspec
import pytest

from capfleet.config import RunConfig
from capfleet.io.location import Location
from capfleet.runners.lifecycle import run_caption
from capfleet.runners.shard_processor import ShardProcessor
from capfleet.runners.state import RunState
from capfleet.sources import open_source
from tests.image_zoo import write_noise_images
from tests.pipeline.helpers import read_rows

KEYS = [f"{i:09d}" for i in range(6)]


def config(inputs, out, **overrides) -> RunConfig:
    values = {"captioner": "none", "scorer": "none", "shard_size": 3, "workers": 2, "progress": False}
    return RunConfig(inputs=[str(inputs)], output=str(out), **{**values, **overrides})


class Crash(RuntimeError):
    pass


def test_crash_after_publishing_before_the_marker_is_redone_once(tmp_path, monkeypatch):
    write_noise_images(tmp_path / "imgs", 6)
    real = RunState.mark_done

    def crash_on_shard_1(self, shard, stats):
        if shard.name == "00001":
            raise Crash("killed between publish and marker")
        return real(self, shard, stats)

    monkeypatch.setattr(RunState, "mark_done", crash_on_shard_1)
    with pytest.raises(Crash):
        run_caption(config(tmp_path / "imgs", tmp_path / "out", shard_retries=0))
    assert (tmp_path / "out" / "00001").is_dir()  # published, never marked
    monkeypatch.setattr(RunState, "mark_done", real)
    summary = run_caption(config(tmp_path / "imgs", tmp_path / "out"))
    assert summary.shards_done_before == 1 and summary.stats.seen == 3
    assert sorted(row["key"] for row in read_rows(tmp_path / "out")) == KEYS
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["00000", "00001", "_capfleet"]


def test_two_attempts_of_one_shard_racing_publish_one_copy(tmp_path, monkeypatch):
    """Beam's speculative execution: two workers finish the same shard at the same moment."""
    write_noise_images(tmp_path / "imgs", 6)
    run_caption(config(tmp_path / "imgs", tmp_path / "out"))
    cfg = config(tmp_path / "imgs", tmp_path / "out")
    shard = RunState(Location(cfg.output)).plan(cfg, open_source(cfg.inputs, cfg))[1]
    both_staged = threading.Barrier(2)
    real = Location.publish_dir

    def publish_together(self, staged, name):
        both_staged.wait(timeout=30)
        return real(self, staged, name)

    monkeypatch.setattr(Location, "publish_dir", publish_together)
    with ThreadPoolExecutor(2) as io:
        processors = [ShardProcessor(cfg, open_source(cfg.inputs, cfg), None, None, io) for _ in range(2)]
        with ThreadPoolExecutor(2) as attempts:
            results = list(attempts.map(lambda p: p.process(shard), processors))
    assert [r.captioned for r in results] == [3, 3]
    assert sorted(row["key"] for row in read_rows(tmp_path / "out")) == KEYS
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["00000", "00001", "_capfleet"]
    assert len(list((tmp_path / "out" / "00001").iterdir())) == 4  # three images and metadata.jsonl


def test_a_redo_on_an_object_store_with_fewer_images_leaves_no_stray_files(tmp_path):
    paths = write_noise_images(tmp_path / "imgs", 6)
    url = "memory://bucket/redo"
    run_caption(config(tmp_path / "imgs", url))
    fs = fsspec.filesystem("memory")
    assert len(fs.find("/bucket/redo/00001")) == 4
    fs.rm("/bucket/redo/_capfleet/completions/00001.json")  # shard 1 must be redone...
    paths[4].unlink()  # ...and one of its images is gone this time
    summary = run_caption(config(tmp_path / "imgs", url))
    assert summary.stats.captioned == 2 and summary.stats.failed == 1
    names = sorted(path.rsplit("/", 1)[1] for path in fs.find("/bucket/redo/00001"))
    assert names == ["000000003.jpg", "000000005.jpg", "metadata.jsonl"]
