"""BLIP sampling with each image's cross-attention keys and values computed once, not per candidate.

HF `generate` with `num_return_sequences=N` copies each image's encoding N times before the text
decoder's first step, so every decoder layer projects the same 577 image tokens into keys and
values N times (full-size BLIP in bf16, 8 images x 3 candidates, one thread: 4.2 s of a 19 s
`generate`, where one projection per image takes 1.4 s). Here the decoder first reads the start
token once per image, which fills its cross-attention cache; that cache is repeated per candidate
and HF's `generate` goes on from it with an empty self-attention cache, so every sampled step is
HF's own. The captions are the same as `model.generate`'s (tests/models/test_image_keys_once.py).
"""

from __future__ import annotations

import warnings

import torch


def generate_blip(model, inputs: dict[str, torch.Tensor], kwargs: dict) -> torch.Tensor:
    """`BlipForConditionalGeneration.generate(**inputs, **kwargs)` for sampling, keys and values once per image."""
    from transformers.cache_utils import DynamicCache, EncoderDecoderCache

    copies = kwargs["num_return_sequences"]
    decoder, text_config = model.text_decoder, model.config.text_config
    embeds = model.vision_model(pixel_values=inputs["pixel_values"])[0]
    ids, mask = inputs.get("input_ids"), inputs.get("attention_mask")
    if ids is None:
        ids = torch.full((embeds.shape[0], 1), text_config.bos_token_id, device=embeds.device)
    else:  # a prompt: BLIP starts from its start token in the place of [CLS], and drops the closing [SEP]
        ids = torch.cat([torch.full_like(ids[:, :1], text_config.bos_token_id), ids[:, 1:-1]], dim=1)
        mask = mask[:, :-1] if mask is not None else None
    first = decoder(input_ids=ids[:, :1], encoder_hidden_states=embeds, use_cache=True)
    cross = first.past_key_values.cross_attention_cache
    cross.batch_repeat_interleave(copies)

    def repeat(tensor: torch.Tensor | None) -> torch.Tensor | None:
        return None if tensor is None else tensor.repeat_interleave(copies, dim=0)

    with warnings.catch_warnings():  # transformers 5.25 renames it `cache`; every 5.x takes this name
        warnings.filterwarnings("ignore", "`past_key_values` is deprecated", FutureWarning)
        return decoder.generate(
            input_ids=repeat(ids),
            attention_mask=repeat(mask),
            encoder_hidden_states=repeat(embeds),
            past_key_values=EncoderDecoderCache(DynamicCache(config=decoder.config), cross),
            eos_token_id=text_config.sep_token_id,
            pad_token_id=text_config.pad_token_id,
            **{**kwargs, "num_return_sequences": 1},
        )
