"""Each filter with its real packaged model (OCR, NudeNet) or a classifier exported here (ONNX)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from capfleet.config import ConfigError, RunConfig
from capfleet.sample import Item, Sample
from capfleet.stages.decode import decode_sample
from capfleet.stages.filters import FilterChain
from tests.filter_images import export, jpeg_bytes, redness_classifier, scenes, text_image


def screen(config_values: dict, image: Image.Image, key: str = "000000000") -> Sample:
    """One image through a run's filter chain, exactly as the reader threads do it."""
    config = RunConfig(inputs=["x"], output="y", captioner="none", scorer="none", **config_values)
    sample = Sample(Item(key, f"/in/{key}.jpg"), data=jpeg_bytes(image, 95))
    chain = FilterChain(config)
    return chain.for_shard("00000")(decode_sample(sample, config.max_pixels, max(384, chain.decode_side)))


@pytest.fixture(scope="module")
def scene_images(tmp_path_factory) -> list[Image.Image]:
    return [Image.open(path).convert("RGB") for path in scenes(tmp_path_factory.mktemp("scenes"), 4, size=320)]


# --- OCR text overlays (PP-OCR models inside the rapidocr_onnxruntime wheel) ---


def test_rendered_text_scores_a_high_text_area_and_gives_its_words():
    pytest.importorskip("rapidocr_onnxruntime")
    sample = screen({"max_text_area": 1.0}, text_image(["SUMMER SALE", "BUY NOW 50"]))
    assert sample.filtered is None and sample.error is None
    assert sample.fields["text_area"] > 0.08
    words = sample.fields["ocr_text"].upper().split()
    assert {"SUMMER", "SALE", "BUY", "NOW"} <= set(words)


def test_synth_scenes_score_no_text(scene_images):
    pytest.importorskip("rapidocr_onnxruntime")
    for image in scene_images:
        sample = screen({"max_text_area": 1.0}, image)
        assert sample.fields["text_area"] < 0.01 and sample.filtered is None


def test_text_above_the_limit_is_filtered_with_score_and_threshold():
    pytest.importorskip("rapidocr_onnxruntime")
    sample = screen({"max_text_area": 0.05}, text_image(["WATERMARK", "STOCK PHOTO"]))
    assert sample.filtered["filter"] == "text_area"
    assert sample.filtered["score"] > 0.05 and sample.filtered["threshold"] == 0.05
    assert sample.filtered["key"] == "000000000"


# --- generic ONNX watermark classifier (the contract of docs/filters.md) ---


def test_an_exported_classifier_scores_by_the_contract(tmp_path):
    model = export(tmp_path, redness_classifier(), "redness")
    red = screen({"watermark_model": model, "watermark_threshold": 0.5}, Image.new("RGB", (64, 48), (220, 30, 30)))
    blue = screen({"watermark_model": model}, Image.new("RGB", (64, 48), (30, 30, 220)))
    assert red.filtered["filter"] == "watermark" and red.filtered["score"] > 0.99
    assert red.filtered["threshold"] == 0.5
    assert blue.filtered is None and blue.fields["watermark_score"] < 0.01


def test_a_model_outside_the_contract_is_refused_with_a_clear_message(tmp_path):
    torch = pytest.importorskip("torch")

    class Logits(torch.nn.Module):
        def forward(self, image):
            return image.mean((2, 3)) * 100  # (N, 3) raw scores, not one probability

    with pytest.raises(ConfigError, match="one probability in \\[0, 1\\]"):
        screen({"watermark_model": export(tmp_path, Logits(), "logits")}, Image.new("RGB", (8, 8)))
    with pytest.raises(ConfigError, match="fixed H and W"):
        screen(
            {"watermark_model": export(tmp_path, redness_classifier(), "dynamic", side=None)}, Image.new("RGB", (8, 8))
        )
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(ConfigError, match="not a loadable ONNX model"):
        screen({"watermark_model": str(tmp_path / "junk.onnx")}, Image.new("RGB", (8, 8)))
    with pytest.raises(ConfigError, match="no such file"):
        screen({"watermark_model": str(tmp_path / "missing.onnx")}, Image.new("RGB", (8, 8)))


# --- NSFW (NudeNet's ONNX detector inside the nudenet wheel) ---
# No NSFW test images can be made here, so only the safe side is checked: the real detector
# loads, runs on every image and scores safe images (scenes, text, a skin-toned gradient) low.


def test_nudenet_loads_and_scores_safe_images_low(scene_images):
    pytest.importorskip("nudenet")
    yy, xx = np.mgrid[0:240, 0:320]
    skin = np.stack([200 + 0 * xx, 150 + yy // 8, 120 + xx // 10], axis=-1).astype(np.uint8)
    for image in [*scene_images, text_image(["HELLO"]), Image.fromarray(skin)]:
        sample = screen({"nsfw_threshold": 0.5}, image)
        assert sample.filtered is None and sample.error is None
        assert 0.0 <= sample.fields["nsfw_score"] < 0.2


# --- size ---


def test_size_filters_use_the_stored_size_not_the_shrunk_one():
    small = screen({"min_side": 100}, Image.new("RGB", (120, 90)))
    assert small.filtered == {
        "key": "000000000", "source": "/in/000000000.jpg", "filter": "min_side", "score": 90, "threshold": 100,
    }  # fmt: skip
    wide = screen({"max_aspect_ratio": 3.0}, Image.new("RGB", (1600, 400)))
    assert wide.filtered["filter"] == "aspect_ratio" and wide.filtered["score"] == 4.0
    assert screen({"min_side": 100, "max_aspect_ratio": 3.0}, Image.new("RGB", (1200, 500))).filtered is None
