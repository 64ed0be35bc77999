"""The production API (capfleet.load): caption, embed and score with the built-in model."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

import capfleet
from capfleet.api import CaptionResult, InvalidImageError
from capfleet.config import ConfigError
from capfleet.models.registry import ModelLoadError
from capfleet.synth import generate_synthetic_dataset


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("api-scenes")
    generate_synthetic_dataset(3, folder, seed=11, size=96, shard_size=100)
    return sorted(folder.rglob("*.png"))


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def test_caption_takes_paths_bytes_and_pil_images_and_ranks_like_a_run(builtin_model, scenes):
    inputs = [scenes[0], scenes[1].read_bytes(), Image.open(scenes[2]).convert("RGBA")]
    results = builtin_model.caption(inputs, candidates=4, seed=3)
    assert len(results) == 3 and all(isinstance(result, CaptionResult) for result in results)
    for result in results:
        assert result.candidates and len(result.scores) == len(result.candidates)
        assert result.text == result.candidates[int(np.argmax(result.scores))]
    # the scores are the scorer's cosine similarities, exactly what score() reports
    matrix = builtin_model.score([scenes[0]], results[0].candidates)
    # bf16 (the CPU default where AMX exists) moves a score by ~1e-3 with the batch it is computed in
    assert np.allclose(matrix[0], results[0].scores, atol=5e-3)
    # a path and its bytes are one image; a seed makes a call repeatable
    by_path = builtin_model.caption([str(scenes[0])], candidates=4, seed=3)
    assert by_path == builtin_model.caption([scenes[0].read_bytes()], candidates=4, seed=3)


def test_embeddings_are_normalised_float32(builtin_model, scenes):
    images = builtin_model.embed_images(scenes)
    texts = builtin_model.embed_texts(["a red circle", "a blue square above a green star"])
    assert images.dtype == texts.dtype == np.float32
    assert images.shape[0] == 3 and texts.shape == (2, images.shape[1])
    assert np.allclose(np.linalg.norm(images, axis=1), 1, atol=1e-5)
    assert np.allclose(builtin_model.score(scenes, ["a red circle"]), images @ texts[:1].T, atol=1e-5)


def test_without_a_scorer_the_first_candidate_is_kept(scenes):
    model = capfleet.load("builtin", scorer=None, device="cpu")
    assert model.scorer_name == "none"
    [result] = model.caption([scenes[0]], candidates=3, seed=0)
    assert result.scores == [] and result.text == result.candidates[0]
    with pytest.raises(ConfigError, match="no scorer loaded"):
        model.embed_texts(["a red circle"])


def test_auto_scorer_is_the_builtin_models_own_heads():
    model = capfleet.load("builtin", device="cpu")
    assert model.scorer_name == model.captioner_name


def test_bad_images_and_options_raise_clear_errors(builtin_model, scenes):
    bomb = _png_bytes(Image.new("1", (10_000, 10_000)))
    with pytest.raises(InvalidImageError, match=r"image 1: not an image: looks like an HTML"):
        builtin_model.caption([scenes[0], b"<!DOCTYPE html><html>404</html>"])
    with pytest.raises(InvalidImageError, match=r"image 0: image too large"):
        builtin_model.caption([bomb])
    with pytest.raises(InvalidImageError, match=r"image 0: cannot read .*missing.png"):
        builtin_model.embed_images([scenes[0].parent / "missing.png"])
    with pytest.raises(ConfigError, match="takes no prompt"):
        builtin_model.caption([scenes[0]], prompt="a photo of")
    with pytest.raises(ConfigError, match="candidates must be >= 1"):
        builtin_model.caption([scenes[0]], candidates=0)
    with pytest.raises(ModelLoadError, match="unknown captioner"):
        capfleet.load("no-such-model")
