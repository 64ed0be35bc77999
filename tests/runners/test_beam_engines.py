"""The openai engine and hygiene counts under the Beam runner: the same rows and counts as local."""

from __future__ import annotations

import pytest

pytest.importorskip("apache_beam")

from PIL import Image  # noqa: E402

from capfleet.config import RunConfig  # noqa: E402
from capfleet.runners.beam import run_beam  # noqa: E402
from capfleet.runners.lifecycle import run_caption  # noqa: E402
from tests.models.openai_fake_server import FakeChatServer  # noqa: E402
from tests.pipeline.helpers import read_errors, read_rows  # noqa: E402


def test_beam_and_local_agree_through_an_endpoint(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for index, scenario in enumerate(["ok", "refuses", "fewer", "down500", "ok2"]):
        Image.new("RGB", (30, 30), (index * 40, 0, 0)).save(images / f"{index}.png")
        (images / f"{index}.txt").write_text(scenario)
    with FakeChatServer() as server:
        settings = dict(captioner="m", scorer="none", engine="openai", api_base=server.api_base, retries=1)
        settings.update(prompt="{original_text}", candidates=2, shard_size=2, progress=False)
        local = run_caption(RunConfig([str(images)], str(tmp_path / "local"), **settings))
        beam = run_beam(RunConfig([str(images)], str(tmp_path / "beam"), **settings))

    def rows(out):
        return sorted((r["key"], r["candidates"], r["flags"]) for r in read_rows(out))

    assert rows(tmp_path / "local") == rows(tmp_path / "beam") and len(rows(tmp_path / "beam")) == 4
    assert [e["key"] for e in read_errors(tmp_path / "beam")] == ["000000003"]
    assert (beam.stats.captioned, beam.stats.failed) == (local.stats.captioned, local.stats.failed) == (4, 1)
    assert beam.stats.hygiene == local.stats.hygiene and beam.stats.hygiene["images_flagged"] == 1
