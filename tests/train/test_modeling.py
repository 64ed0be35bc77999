"""The captioner as an HF model: losses, KV cache correctness, generate (sampling / beams), Auto loading."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoImageProcessor, AutoModel, AutoModelForImageTextToText, AutoTokenizer, DynamicCache
from transformers.cache_utils import EncoderDecoderCache

from capfleet.modeling.configuration import preset_config
from capfleet.modeling.model import CapfleetCaptionerModel
from tests.train.helpers import draw


@pytest.fixture(scope="module")
def model() -> CapfleetCaptionerModel:
    torch.manual_seed(0)
    return CapfleetCaptionerModel(preset_config("tiny", 30, 32, max_position_embeddings=24)).eval()


def _batch():
    torch.manual_seed(1)
    px = torch.randn(2, 3, 32, 32)
    ids = torch.tensor([[1, 5, 6, 7, 8, 2], [1, 9, 10, 2, 0, 0]])
    return px, ids, (ids != 0).long()


def test_forward_losses(model):
    px, ids, mask = _batch()
    labels = ids.masked_fill(mask == 0, -100)
    out = model(pixel_values=px, input_ids=ids, attention_mask=mask, labels=labels, return_loss=True)
    assert out.logits.shape == (2, 6, 30)
    manual = F.cross_entropy(out.logits[:, :-1].reshape(-1, 30), labels[:, 1:].reshape(-1), ignore_index=-100)
    torch.testing.assert_close(out.lm_loss, manual)
    torch.testing.assert_close(out.loss, out.lm_loss + out.contrastive_loss)
    assert out.logits_per_image.shape == (2, 2) and out.image_embeds.shape == (2, 32)
    # return_loss alone derives labels from input_ids (pad ignored)
    torch.testing.assert_close(model(pixel_values=px, input_ids=ids, return_loss=True).lm_loss, out.lm_loss)


def test_padding_does_not_change_real_tokens(model):
    px, ids, mask = _batch()
    padded = model(pixel_values=px, input_ids=ids, attention_mask=mask).logits[1, :4]
    alone = model(pixel_values=px[1:], input_ids=ids[1:, :4]).logits[0]
    torch.testing.assert_close(padded, alone, atol=1e-5, rtol=1e-5)


def test_kv_cache_matches_full_forward(model):
    px, ids, _ = _batch()
    full = model(pixel_values=px, input_ids=ids).logits
    enc = model.get_encoder()(px)
    cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
    steps = [model(encoder_outputs=enc, input_ids=ids[:, :3], cache=cache, use_cache=True).logits]
    for t in range(3, ids.shape[1]):
        steps.append(model(encoder_outputs=enc, input_ids=ids[:, t : t + 1], cache=cache, use_cache=True).logits)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)


def test_generate_sampling_beams_and_single_encoder_pass(model):
    px, _, _ = _batch()
    calls = []
    hook = model.encoder.register_forward_hook(lambda *_: calls.append(1))
    try:
        greedy = model.generate(pixel_values=px, max_new_tokens=6)
        assert torch.equal(greedy, model.generate(pixel_values=px, max_new_tokens=6, use_cache=False))
        torch.manual_seed(0)
        sampled = model.generate(pixel_values=px, max_new_tokens=6, do_sample=True, top_p=0.9, num_return_sequences=3)
        beams = model.generate(pixel_values=px, max_new_tokens=6, num_beams=3, num_return_sequences=3)
        no_cache = model.generate(
            pixel_values=px, max_new_tokens=6, num_beams=3, num_return_sequences=3, use_cache=False
        )
    finally:
        hook.remove()
    assert len(calls) == 5  # the image is encoded once per generate call, then expanded
    for out in (sampled, beams):
        assert out.shape[0] == 6 and 2 <= out.shape[1] <= 7 and bool((out[:, 0] == 1).all())
    assert torch.equal(beams, no_cache)


def test_bfloat16_generate(model):
    px, _, _ = _batch()
    half = CapfleetCaptionerModel(model.config).to(torch.bfloat16).eval()
    out = half.generate(pixel_values=px, max_new_tokens=4, do_sample=True, top_p=0.9, num_return_sequences=2)
    assert out.shape[0] == 4


def test_auto_round_trip_generate_and_features(tiny_bundle):
    model = AutoModel.from_pretrained(tiny_bundle).eval()
    assert isinstance(model, CapfleetCaptionerModel)
    assert isinstance(AutoModelForImageTextToText.from_pretrained(tiny_bundle), CapfleetCaptionerModel)
    tok, proc = AutoTokenizer.from_pretrained(tiny_bundle), AutoImageProcessor.from_pretrained(tiny_bundle)
    px = proc(images=[draw("red", "square", 40, 0), draw("blue", "circle", 24, 1)], return_tensors="pt")
    px = px["pixel_values"]
    torch.manual_seed(0)
    sampled = model.generate(pixel_values=px, max_new_tokens=5, do_sample=True, top_p=0.9, num_return_sequences=3)
    beams = model.generate(pixel_values=px, max_new_tokens=5, num_beams=3, num_return_sequences=3)
    for seqs in (sampled, beams):
        assert seqs.shape[0] == 6 and seqs.dtype == torch.long
        assert all(isinstance(t, str) for t in tok.batch_decode(seqs, skip_special_tokens=True))
    texts = tok(["a red square", "a blue circle.", "a shape"], padding=True, return_tensors="pt")
    img = model.get_image_features(pixel_values=px).pooler_output
    txt = model.get_text_features(**texts).pooler_output
    assert img.shape == (2, model.config.projection_dim) and txt.shape == (3, model.config.projection_dim)
    assert model.score(px, texts["input_ids"], texts["attention_mask"]).shape == (2, 3)


def test_generate_dict_outputs_and_prompt(model):
    px, _, _ = _batch()
    out = model.generate(
        pixel_values=px,
        max_new_tokens=3,
        num_beams=2,
        num_return_sequences=2,
        min_new_tokens=3,
        return_dict_in_generate=True,
        output_scores=True,
        output_hidden_states=True,
    )
    assert out.sequences.shape == (4, 4) and out.sequences_scores.shape == (4,)
    assert len(out.decoder_hidden_states) == 3 and len(out.encoder_hidden_states) == 3  # embeddings + 2 layers
    prompt = torch.tensor([[1, 7], [1, 8]])
    seqs = model.generate(pixel_values=px, input_ids=prompt, max_new_tokens=3)
    assert torch.equal(seqs[:, :2], prompt)  # continues a caption prefix


def test_conv_stem_trains_saves_and_reloads(tmp_path):
    """stem="conv" gives the same token grid as the patch embedding, learns, and round-trips through
    from_pretrained with its normalisation statistics (batch statistics in training, running ones after)."""
    torch.manual_seed(0)
    model = CapfleetCaptionerModel(preset_config("tiny", 30, 32, stem="conv", max_position_embeddings=24))
    assert model.get_encoder()(torch.randn(2, 3, 32, 32)).last_hidden_state.shape == (2, 16, 64)
    px, ids, mask = _batch()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(8):
        loss = model(pixel_values=px, input_ids=ids, attention_mask=mask, return_loss=True).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0]
    model.eval()
    model.save_pretrained(tmp_path)
    again = AutoModel.from_pretrained(tmp_path).eval()
    assert again.config.stem == "conv"
    torch.testing.assert_close(
        again(pixel_values=px, input_ids=ids).logits, model(pixel_values=px, input_ids=ids).logits
    )
    with pytest.raises(ValueError, match="stem="):
        preset_config("tiny", 30, 32, stem="resnet")
    with pytest.raises(ValueError, match="power-of-two"):
        preset_config("tiny", 30, 36, stem="conv", patch_size=6)


def test_conv_stem_starts_at_torch_scale_not_the_transformer_one():
    """Convolutions ahead of BatchNorm start at torch's Conv2d scale (std 1/sqrt(3 fan_in)), not the
    N(0, 0.02) of the transformer layers: tiny weights before a normalisation take huge relative steps."""
    torch.manual_seed(0)
    model = CapfleetCaptionerModel(preset_config("small", 30, 64, stem="conv", encoder_hidden_size=128))
    convs = [m for m in model.encoder.patch_embed.modules() if isinstance(m, torch.nn.Conv2d)]
    for conv in convs:
        fan_in = conv.weight[0].numel()
        assert float(conv.weight.detach().std()) == pytest.approx((3 * fan_in) ** -0.5, rel=0.15)
    assert float(model.encoder.layers[0].attn.q_proj.weight.detach().std()) == pytest.approx(0.02, rel=0.1)


def test_sincos_positions_tell_image_tokens_apart_at_the_stem_features_scale():
    """position_init="sincos": every token's start position is distinct, unit scale (the default N(0, 0.02)
    is drowned by the conv stem's features), and nearer tokens start more alike than far ones."""
    config = preset_config("tiny", 30, 32, position_init="sincos")
    positions = CapfleetCaptionerModel(config).encoder.pos_embed[0].detach()
    grid = config.image_size // config.patch_size
    assert positions.shape[0] == grid * grid and positions.pow(2).sum(dim=1).min() > 0.25 * positions.shape[1]
    distance = torch.cdist(positions, positions)
    assert distance[~torch.eye(grid * grid, dtype=torch.bool)].min() > 0.1
    assert distance[0, 1] < distance[0, 2] < distance[0, grid - 1] and distance[0, grid] < distance[0, 2 * grid]
    with pytest.raises(ValueError, match="position_init"):
        preset_config("tiny", 30, 32, position_init="random")


def test_memory_positions_reach_the_decoder_and_survive_save_and_load(tmp_path):
    """memory_positions: the encoder's output tokens carry the 2-D grid, so two images that differ only in
    where the same patch content sits give the decoder different memories; saved and loaded, the grid is
    the same (a buffer transformers builds empty on load would otherwise hold garbage)."""
    torch.manual_seed(0)
    config = preset_config("tiny", 30, 32, memory_positions=True)
    model = CapfleetCaptionerModel(config).eval()
    pixels = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        plain = CapfleetCaptionerModel(preset_config("tiny", 30, 32)).eval()
        plain.load_state_dict({k: v for k, v in model.state_dict().items() if k != "encoder.memory_positions"})
        difference = model.encoder(pixels).last_hidden_state - plain.encoder(pixels).last_hidden_state
    assert torch.allclose(difference[0], model.encoder.memory_positions[0], atol=1e-5)
    assert torch.cdist(difference[0], difference[0]).fill_diagonal_(1).min() > 0.1  # every token's grid differs
    model.save_pretrained(tmp_path)
    loaded = CapfleetCaptionerModel.from_pretrained(tmp_path).eval()
    assert torch.equal(loaded.encoder.memory_positions, model.encoder.memory_positions)
    with torch.no_grad():
        assert torch.equal(loaded.encoder(pixels).last_hidden_state, model.encoder(pixels).last_hidden_state)
