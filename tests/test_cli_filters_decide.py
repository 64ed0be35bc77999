"""Model filters through the CLI, each shown to decide by its model's output: a threshold below an image's
score rejects it, one above keeps it, and the recorded score is the model's. A detector stuck at 0, or a
filter that ignores its score, fails here. The NSFW and OCR models are the real ones their wheels ship."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from capfleet.cli import app
from tests.filter_images import export, jpeg_bytes, redness_classifier, scenes, skin_blobs, text_image
from tests.pipeline.helpers import read_rows

runner = CliRunner()
NONE = ["--captioner", "none", "--no-progress", "--workers", "2"]


def _run(folder: Path, out: Path, *filters: str) -> tuple[dict, dict]:
    result = runner.invoke(app, ["caption", str(folder), "-o", str(out), *NONE, *filters])
    assert result.exit_code == 0, result.output
    filtered = {}
    for path in (out / "_capfleet" / "filtered").glob("filtered-*.jsonl"):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            filtered[Path(record["source"]).name] = record
    return {Path(row["source"]).name: row for row in read_rows(out)}, filtered


def test_nsfw_threshold_decides_by_the_detectors_score(tmp_path):
    pytest.importorskip("nudenet")
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "blobs.jpg").write_bytes(jpeg_bytes(skin_blobs(0), 95))
    for index, path in enumerate(scenes(tmp_path / "scenes", 2, size=320)):
        shutil.copy(path, folder / f"scene{index}.png")

    kept, rejected = _run(folder, tmp_path / "strict", "--nsfw-threshold", "0.5")
    assert set(rejected) == {"blobs.jpg"} and rejected["blobs.jpg"]["filter"] == "nsfw"
    score = rejected["blobs.jpg"]["score"]
    assert 0.5 < score <= 1 and rejected["blobs.jpg"]["threshold"] == 0.5
    assert set(kept) == {"scene0.png", "scene1.png"} and all(row["nsfw_score"] < 0.2 for row in kept.values())

    kept, rejected = _run(folder, tmp_path / "lenient", "--nsfw-threshold", "0.99")
    assert rejected == {} and set(kept) == {"blobs.jpg", "scene0.png", "scene1.png"}
    assert kept["blobs.jpg"]["nsfw_score"] == score  # the same model score, now under the threshold


def test_watermark_threshold_decides_by_the_classifiers_probability(tmp_path):
    model = export(tmp_path, redness_classifier(), "redness")
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "red.jpg").write_bytes(jpeg_bytes(Image.new("RGB", (64, 48), (220, 30, 30))))
    (folder / "blue.jpg").write_bytes(jpeg_bytes(Image.new("RGB", (64, 48), (30, 30, 220))))
    (folder / "grey.jpg").write_bytes(jpeg_bytes(Image.new("RGB", (64, 48), (120, 118, 128))))

    kept, rejected = _run(folder, tmp_path / "half", "--watermark-model", model, "--watermark-threshold", "0.5")
    assert set(rejected) == {"red.jpg"} and rejected["red.jpg"]["score"] > 0.99
    assert set(kept) == {"blue.jpg", "grey.jpg"}
    grey = kept["grey.jpg"]["watermark_score"]
    assert 0.05 < grey < 0.5  # a little bluer than red: between the two, its own score

    kept, rejected = _run(folder, tmp_path / "low", "--watermark-model", model, "--watermark-threshold", "0.01")
    assert set(rejected) == {"red.jpg", "grey.jpg"} and set(kept) == {"blue.jpg"}
    assert rejected["grey.jpg"]["score"] == grey

    # A probability is never above 1: everything is kept, with the scores the model gave.
    kept, rejected = _run(folder, tmp_path / "one", "--watermark-model", model, "--watermark-threshold", "1")
    assert rejected == {} and kept["red.jpg"]["watermark_score"] > 0.99 and kept["grey.jpg"]["watermark_score"] == grey


def test_text_area_limit_decides_by_what_ocr_reads(tmp_path):
    """The real PP-OCR models in the rapidocr_onnxruntime wheel: a poster's text covers a measured fraction
    of it; a limit below that fraction rejects it, one above keeps it with the same fraction and its words."""
    pytest.importorskip("rapidocr_onnxruntime")
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "poster.jpg").write_bytes(jpeg_bytes(text_image(["FREE GIFT", "CALL NOW"])))
    (folder / "scene.png").write_bytes(scenes(tmp_path / "scenes", 1, size=320)[0].read_bytes())

    kept, rejected = _run(folder, tmp_path / "strict", "--max-text-area", "0.01")
    assert set(rejected) == {"poster.jpg"} and rejected["poster.jpg"]["filter"] == "text_area"
    area = rejected["poster.jpg"]["score"]
    assert 0.01 < area < 1 and rejected["poster.jpg"]["threshold"] == 0.01
    assert set(kept) == {"scene.png"} and kept["scene.png"]["text_area"] == 0.0 and kept["scene.png"]["ocr_text"] == ""

    kept, rejected = _run(folder, tmp_path / "lenient", "--max-text-area", "1")
    assert rejected == {} and set(kept) == {"poster.jpg", "scene.png"}
    assert kept["poster.jpg"]["text_area"] == area  # the same measured fraction, now within the limit
    assert {"FREE", "GIFT", "CALL", "NOW"} <= set(kept["poster.jpg"]["ocr_text"].upper().split())
