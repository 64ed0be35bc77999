"""BLIP sampling projects each image's encoding into cross-attention keys once, and samples what HF's generate does."""

from __future__ import annotations

import pytest
import torch

from capfleet.models.image_keys_once import generate_blip

IMAGE_SEED, CANDIDATES = 5, 4


@pytest.mark.parametrize("prompt", [None, "a photo of"])
def test_the_same_tokens_as_hf_generate(captioner, prompt, images):
    inputs, _ = captioner.model_inputs(images, prompt)
    kwargs = captioner.options.generate_kwargs(CANDIDATES, seeds=[7, 8, 9])
    with torch.inference_mode():
        ours = generate_blip(captioner.model, inputs, kwargs)
        kwargs = captioner.options.generate_kwargs(CANDIDATES, seeds=[7, 8, 9])  # fresh generators
        theirs = captioner.model.generate(**inputs, **kwargs)
    assert ours.shape == (len(images) * CANDIDATES, theirs.shape[1])
    assert torch.equal(ours, theirs)


def test_the_keys_are_projected_once_per_image_not_per_candidate(captioner, images):
    rows: list[int] = []
    key = captioner.model.text_decoder.bert.encoder.layer[0].crossattention.self.key
    handle = key.register_forward_hook(lambda module, args, output: rows.append(args[0].shape[0]))
    try:
        candidates = captioner.generate(images, CANDIDATES, seeds=[1, 2, 3])
    finally:
        handle.remove()
    assert len(candidates) == len(images) and all(candidates)
    assert rows == [len(images)]  # one projection of the 3 encodings, reused for all 12 rows and every step
