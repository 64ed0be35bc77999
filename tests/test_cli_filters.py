"""`capfleet caption` with every offline filter and the built-in model, end to end, then a rerun."""

from __future__ import annotations

import json
import shutil

import pytest
from PIL import Image
from typer.testing import CliRunner

from capfleet.cli import app
from tests.filter_images import altered_copies, jpeg_bytes, scenes, text_image
from tests.pipeline.helpers import read_rows

runner = CliRunner()


def test_filters_with_the_builtin_model_record_what_they_drop_and_resume(tmp_path):
    for package in ("rapidocr_onnxruntime", "nudenet", "imagehash"):
        pytest.importorskip(package)
    folder = tmp_path / "in"
    folder.mkdir()
    originals = scenes(tmp_path / "scenes", 5, size=160)
    for index, path in enumerate(originals):
        shutil.copy(path, folder / f"a{index}.png")
    (folder / "b-copy.jpg").write_bytes(altered_copies(Image.open(originals[1]).convert("RGB"))["resized"])
    (folder / "c-poster.jpg").write_bytes(jpeg_bytes(text_image(["FREE GIFT", "CALL NOW"])))
    (folder / "d-thumb.jpg").write_bytes(jpeg_bytes(Image.new("RGB", (24, 24), (200, 40, 40))))
    out = tmp_path / "out"
    args = ["caption", str(folder), "-o", str(out), "--captioner", "builtin", "--scorer", "builtin"]
    args += ["--candidates", "2", "--shard-size", "3", "--no-progress", "--max-text-area", "0.1", "--min-side", "32"]
    args += ["--dedup", "near", "--nsfw-threshold", "0.6"]

    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "captioned: 5  failed: 0  filtered: 3" in result.output
    filtered = {}
    for path in sorted((out / "_capfleet" / "filtered").glob("filtered-*.jsonl")):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            filtered[record["source"].rsplit("/", 1)[1]] = record
    assert {name: record["filter"] for name, record in filtered.items()} == {
        "b-copy.jpg": "duplicate",
        "c-poster.jpg": "text_area",
        "d-thumb.jpg": "min_side",
    }
    rows = read_rows(out)
    assert filtered["b-copy.jpg"]["duplicate_of"] == next(r["key"] for r in rows if r["source"].endswith("a1.png"))
    assert sorted(row["source"].rsplit("/", 1)[1] for row in rows) == [f"a{i}.png" for i in range(5)]
    assert all(row["text"] and row["text_area"] == 0.0 and row["nsfw_score"] < 0.6 for row in rows)

    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert "shards: 3 (3 already done)" in again.output and "skipped (already done): 8" in again.output
    changed = runner.invoke(app, [*args[:-1], "0.9"])
    assert changed.exit_code == 2 and "nsfw_threshold: 0.6 -> 0.9" in changed.output
