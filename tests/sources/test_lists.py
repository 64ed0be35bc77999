"""Local file lists are planned from line offsets, not from a list of every item."""

from __future__ import annotations

import pytest

from capfleet.config import RunConfig
from capfleet.runners.lifecycle import run_caption
from capfleet.sources import lists
from tests.image_zoo import write_noise_images
from tests.pipeline.helpers import read_errors, read_rows


def config(inputs, out, **overrides) -> RunConfig:
    values = {"captioner": "none", "scorer": "none", "workers": 2, "progress": False, "shard_size": 3}
    values.update(overrides)
    return RunConfig(inputs=[str(i) for i in inputs], output=str(out), **values)


@pytest.mark.parametrize("checkpoint", [1024, 2])
def test_two_lists_give_globally_numbered_rows_whatever_the_seek_points(tmp_path, monkeypatch, checkpoint):
    monkeypatch.setattr(lists, "CHECKPOINT_ROWS", checkpoint)
    images = write_noise_images(tmp_path / "imgs", 9)
    lines = "".join(f"imgs/{p.name}\tcap {i}\n\n" for i, p in enumerate(images[:7]))
    (tmp_path / "a.txt").write_text("# comment\n" + lines)
    (tmp_path / "b.txt").write_text(f"{images[7]}\n{tmp_path}/imgs/missing.jpg\n{images[8]}\n")
    summary = run_caption(config([tmp_path / "a.txt", tmp_path / "b.txt"], tmp_path / "out", limit=8))
    assert summary.stats.seen == 8 and summary.shards == 4  # shards never cross a list: 3 + 3 + 1, then 1
    again = run_caption(config([tmp_path / "a.txt", tmp_path / "b.txt"], tmp_path / "out"))
    rows, errors = read_rows(tmp_path / "out"), read_errors(tmp_path / "out")
    assert [row["key"] for row in rows] == [f"{i:09d}" for i in (0, 1, 2, 3, 4, 5, 6, 7, 9)]
    assert [row["source"] for row in rows] == [str(p) for p in images]
    assert [row["original_text"] for row in rows[:7]] == [f"cap {i}" for i in range(7)]
    assert [error["key"] for error in errors] == ["000000008"] and again.shards_done_before == 3
    assert len((tmp_path / "out" / "_capfleet" / "manifest.jsonl").read_text().splitlines()) == 2
