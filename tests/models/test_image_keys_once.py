"""BLIP sampling projects each image's encoding into cross-attention keys once, and samples what HF's generate does."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from capfleet.models.captioner import HFCaptioner
from capfleet.models.image_keys_once import generate_blip

IMAGES, CANDIDATES = 3, 4


@pytest.fixture(scope="module")
def captioner(tiny_blip):
    return HFCaptioner.load(str(tiny_blip), device="cpu", dtype="float32", max_new_tokens=8)


def _images() -> list[Image.Image]:
    rng = np.random.default_rng(5)
    return [Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)) for _ in range(IMAGES)]


@pytest.mark.parametrize("prompt", [None, "a photo of"])
def test_the_same_tokens_as_hf_generate(captioner, prompt):
    inputs, _ = captioner.model_inputs(_images(), prompt)
    kwargs = captioner.options.generate_kwargs(CANDIDATES, seeds=[7, 8, 9])
    with torch.inference_mode():
        ours = generate_blip(captioner.model, inputs, kwargs)
        kwargs = captioner.options.generate_kwargs(CANDIDATES, seeds=[7, 8, 9])  # fresh generators
        theirs = captioner.model.generate(**inputs, **kwargs)
    assert ours.shape == (IMAGES * CANDIDATES, theirs.shape[1])
    assert torch.equal(ours, theirs)


def test_the_keys_are_projected_once_per_image_not_per_candidate(captioner):
    rows: list[int] = []
    key = captioner.model.text_decoder.bert.encoder.layer[0].crossattention.self.key
    handle = key.register_forward_hook(lambda module, args, output: rows.append(args[0].shape[0]))
    try:
        candidates = captioner.generate(_images(), CANDIDATES, seeds=[1, 2, 3])
    finally:
        handle.remove()
    assert len(candidates) == IMAGES and all(candidates)
    assert rows == [IMAGES]  # one projection of the 3 encodings, reused for all 12 rows and every step
