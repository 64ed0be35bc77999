"""capfleet's BLIP runs its vision attention fused, and captions as transformers' eager BLIP does."""

from __future__ import annotations

import torch
import transformers

from capfleet.models.captioner import HFCaptioner

IMAGE_SEED, CANDIDATES, SEEDS = 11, 4, [7, 8, 9]


def _fused_calls(captioner, images, monkeypatch) -> list[tuple[int, ...]]:
    """The query shapes of every fused attention call while `captioner` samples."""
    fused = torch.nn.functional.scaled_dot_product_attention
    shapes: list[tuple[int, ...]] = []

    def counting(query, *args, **kwargs):
        shapes.append(tuple(query.shape))
        return fused(query, *args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", counting)
    assert all(captioner.generate(images, CANDIDATES, seeds=SEEDS))
    return shapes


def test_the_vision_encoder_calls_the_fused_kernel_once_per_layer(captioner, images, monkeypatch):
    shapes = _fused_calls(captioner, images, monkeypatch)
    vision = captioner.model.config.vision_config
    heads, tokens = vision.num_attention_heads, (vision.image_size // vision.patch_size) ** 2 + 1
    width = vision.hidden_size // heads
    assert shapes == [(len(images), heads, tokens, width)] * vision.num_hidden_layers


def test_a_bf16_blip_keeps_transformers_eager_attention(tiny_blip, images, monkeypatch):
    # in bf16 the fused kernel bought a whole run nothing and moved scores between batch sizes
    bf16 = HFCaptioner.load(str(tiny_blip), device="cpu", dtype="bfloat16", max_new_tokens=8)
    assert _fused_calls(bf16, images, monkeypatch) == []


def test_the_same_encodings_and_captions_as_eager_blip(captioner, tiny_blip, images):
    eager = transformers.BlipForConditionalGeneration.from_pretrained(tiny_blip, dtype=torch.float32).eval()
    pixels = captioner.model_inputs(images, None)[0]["pixel_values"]
    with torch.inference_mode():
        ours = captioner.model.vision_model(pixel_values=pixels)[0]
        theirs = eager.vision_model(pixel_values=pixels)[0]
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    plain = HFCaptioner(eager, captioner.processor, captioner.tokenizer, "blip", "eager", captioner.options)
    expected = plain.generate(images, CANDIDATES, seeds=SEEDS)
    assert captioner.generate(images, CANDIDATES, seeds=SEEDS) == expected


def test_attention_weights_when_asked_come_from_eager_attention(captioner, images):
    pixels = captioner.model_inputs(images, None)[0]["pixel_values"]
    with torch.inference_mode():
        output = captioner.model.vision_model(pixel_values=pixels, output_attentions=True)
    assert len(output.attentions) == captioner.model.config.vision_config.num_hidden_layers
    assert all(weights is not None and torch.allclose(weights.sum(-1), torch.ones(())) for weights in output.attentions)
