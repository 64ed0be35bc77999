"""A capfleet model that captions and ranks is loaded once and encodes each batch once."""

from __future__ import annotations

import torch

import capfleet
from capfleet.api import CaptionModel
from capfleet.builtin import MODEL_DIR
from capfleet.modeling.configuration import preset_config
from capfleet.modeling.model import CapfleetCaptionerModel
from capfleet.models.scorer import HFScorer
from capfleet.synth import generate_synthetic_dataset


def test_the_builtin_scorer_is_the_captioners_own_model():
    model = capfleet.load("builtin", device="cpu", dtype="float32")
    assert model.scorer.model is model.captioner.model  # one copy of the weights


def test_sharing_the_encoding_changes_no_caption_or_score(tmp_path):
    generate_synthetic_dataset(6, tmp_path / "scenes", seed=3, size=64, progress=False)
    images = sorted((tmp_path / "scenes").rglob("*.png"))
    shared = capfleet.load("builtin", device="cpu", dtype="float32", batch_size=3)
    separate = CaptionModel(
        shared.captioner, HFScorer.load(str(MODEL_DIR), device="cpu", dtype="float32"), batch_size=3
    )
    assert separate.scorer.model is not shared.captioner.model
    assert shared.caption(images, candidates=4, seed=1) == separate.caption(images, candidates=4, seed=1)


def test_the_kept_encoding_is_dropped_when_weights_or_pixels_change():
    encoder = capfleet.load("builtin", device="cpu", dtype="float32").captioner.model.encoder
    pixels = torch.rand(2, 3, 64, 64)
    pixels_before = pixels.clone()
    with torch.inference_mode():
        first = encoder(pixels).last_hidden_state
        assert encoder(pixels.clone()).last_hidden_state is first  # the same pixels: the kept encoding
        assert not torch.equal(encoder(pixels.flip(0)).last_hidden_state, first)  # other pixels: encoded anew
        encoder(pixels)
        pixels[0] = 0.5  # the caller refills its own tensor in place
        assert not torch.equal(encoder(pixels).last_hidden_state[0], first[0])
        pixels.copy_(pixels_before)
    with torch.no_grad():
        encoder.norm.bias.add_(1.0)  # an in-place update, as an optimiser step makes
    with torch.inference_mode():
        assert torch.allclose(encoder(pixels).last_hidden_state, first + 1.0, atol=1e-5)


def test_a_model_built_under_inference_mode_still_encodes():
    """Weights made under torch.inference_mode keep no version counter: such a model encodes every time."""
    with torch.inference_mode():
        model = CapfleetCaptionerModel(preset_config("tiny", 37, stem="conv")).eval()
        pixels = torch.rand(2, 3, 64, 64)
        first = model.encoder(pixels).last_hidden_state
        assert torch.equal(model.encoder(pixels).last_hidden_state, first)
