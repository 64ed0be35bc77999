"""capfleet's small image captioner: a ViT encoder, a causal transformer decoder with cross-attention, and
CLIP-style projection heads so one checkpoint can both write captions and rank candidate captions.

It is an encoder-decoder model for transformers' ``generate``: ``get_encoder()`` returns the ViT, so the
image is encoded once per ``generate`` call and the encoder output is expanded for beams /
``num_return_sequences`` by transformers itself. The decoder keeps a KV cache (``EncoderDecoderCache``,
self-attention keys grow, cross-attention keys are computed once). Importing this module registers the
model with ``AutoConfig`` / ``AutoModel`` / ``AutoModelForImageTextToText``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.cache_utils import Cache, DynamicCache, EncoderDecoderCache
from transformers.modeling_outputs import BaseModelOutput, BaseModelOutputWithPooling
from transformers.utils import ModelOutput

from .configuration import MODEL_TYPE, RELATION_SLOTS, CapfleetCaptionerConfig


@dataclass
class CapfleetCaptionerOutput(ModelOutput):
    """Output of :meth:`CapfleetCaptionerModel.forward` (``loss`` = ``lm_loss`` + ``contrastive_loss``)."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    cache: Cache | None = None
    lm_loss: torch.Tensor | None = None
    contrastive_loss: torch.Tensor | None = None
    object_logits: torch.Tensor | None = None  # (images x tokens x classes [+ RELATION_SLOTS]), ``return_objects``
    logits_per_image: torch.Tensor | None = None
    logits_per_text: torch.Tensor | None = None
    image_embeds: torch.Tensor | None = None
    text_embeds: torch.Tensor | None = None
    logit_scale: torch.Tensor | None = None
    encoder_last_hidden_state: torch.Tensor | None = None
    # (images x tokens x config.feature_distill_dim): the image tokens mapped to a teacher's width, in training
    distill_features: torch.Tensor | None = None
    # for generate(output_hidden_states / output_attentions): SDPA gives no attention weights
    decoder_hidden_states: tuple[torch.Tensor, ...] | None = None
    decoder_attentions: tuple[torch.Tensor, ...] | None = None
    cross_attentions: tuple[torch.Tensor, ...] | None = None


class Attention(nn.Module):
    """Multi-head attention on ``F.scaled_dot_product_attention``; ``kv_dim`` set means cross-attention."""

    def __init__(
        self, dim: int, heads: int, kv_dim: int | None = None, dropout: float = 0.0, layer_idx: int = 0
    ) -> None:
        super().__init__()
        self.heads, self.head_dim, self.dropout, self.layer_idx = heads, dim // heads, dropout, layer_idx
        self.is_cross = kv_dim is not None
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(kv_dim or dim, dim, bias=False)  # a key bias cannot change softmax
        self.v_proj = nn.Linear(kv_dim or dim, dim)
        self.o_proj = nn.Linear(dim, dim)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.shape[0], x.shape[1], self.heads, self.head_dim).transpose(1, 2)

    def forward(
        self,
        x: torch.Tensor,
        kv: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        is_causal: bool = False,
        cache: Cache | None = None,
    ) -> torch.Tensor:
        q = self._split(self.q_proj(x))
        cross_cache = cache.cross_attention_cache if isinstance(cache, EncoderDecoderCache) else None
        if self.is_cross and cross_cache is not None and cache.is_updated.get(self.layer_idx):
            layer = cross_cache.layers[self.layer_idx]
            k, v = layer.keys, layer.values
        else:
            src = kv if self.is_cross else x
            k, v = self._split(self.k_proj(src)), self._split(self.v_proj(src))
            if self.is_cross and cross_cache is not None:
                k, v = cross_cache.update(k, v, self.layer_idx)
                cache.is_updated[self.layer_idx] = True
            elif not self.is_cross and cache is not None:
                self_cache = cache.self_attention_cache if isinstance(cache, EncoderDecoderCache) else cache
                k, v = self_cache.update(k, v, self.layer_idx)
        out = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            is_causal=is_causal and mask is None,
            dropout_p=self.dropout if self.training else 0.0,
        )
        return self.o_proj(out.transpose(1, 2).reshape(x.shape[0], x.shape[1], -1))


class MLP(nn.Sequential):
    def __init__(self, dim: int, ratio: float, dropout: float) -> None:
        hidden = int(dim * ratio)
        super().__init__(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim), nn.Dropout(dropout))


class EncoderBlock(nn.Module):
    def __init__(self, cfg: CapfleetCaptionerConfig) -> None:
        super().__init__()
        d = cfg.encoder_hidden_size
        self.ln1 = nn.LayerNorm(d, eps=cfg.layer_norm_eps)
        self.attn = Attention(d, cfg.encoder_attention_heads, dropout=cfg.dropout)
        self.ln2 = nn.LayerNorm(d, eps=cfg.layer_norm_eps)
        self.mlp = MLP(d, cfg.mlp_ratio, cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class DecoderBlock(nn.Module):
    def __init__(self, cfg: CapfleetCaptionerConfig, layer_idx: int) -> None:
        super().__init__()
        d, h, eps = cfg.decoder_hidden_size, cfg.decoder_attention_heads, cfg.layer_norm_eps
        self.ln1 = nn.LayerNorm(d, eps=eps)
        self.self_attn = Attention(d, h, dropout=cfg.dropout, layer_idx=layer_idx)
        self.ln2 = nn.LayerNorm(d, eps=eps)
        self.cross_attn = Attention(d, h, kv_dim=cfg.encoder_hidden_size, dropout=cfg.dropout, layer_idx=layer_idx)
        self.ln3 = nn.LayerNorm(d, eps=eps)
        self.mlp = MLP(d, cfg.mlp_ratio, cfg.dropout)

    def forward(
        self, x: torch.Tensor, enc: torch.Tensor | None, mask: torch.Tensor | None, is_causal: bool, cache: Cache | None
    ) -> torch.Tensor:
        x = x + self.self_attn(self.ln1(x), mask=mask, is_causal=is_causal, cache=cache)
        if enc is not None:  # text-only pass (for text features) skips cross-attention
            x = x + self.cross_attn(self.ln2(x), kv=enc, cache=cache)
        return x + self.mlp(self.ln3(x))


def sincos_positions(grid: int, dim: int) -> torch.Tensor:
    """(grid*grid, dim) row-major 2-D sine/cosine positions: a quarter of the channels each for sin/cos
    of x and of y at geometric frequencies, unit scale like the conv stem's features."""
    quarter = dim // 4
    freqs = 1.0 / 100.0 ** (torch.arange(quarter, dtype=torch.float32) / max(quarter, 1))
    coords = torch.arange(grid, dtype=torch.float32)
    y, x = torch.meshgrid(coords, coords, indexing="ij")
    angles = [axis.flatten()[:, None] * freqs[None, :] for axis in (x, y)]
    table = torch.cat([f(a) for a in angles for f in (torch.sin, torch.cos)], dim=1)
    return F.pad(table, (0, dim - table.shape[1]))


def conv_stem(channels: int, dim: int, patch_size: int, min_width: int = 16) -> nn.Sequential:
    """A small VGG-style CNN down to one token per ``patch_size`` square: per halving, two 3x3
    convolutions (BatchNorm, GELU) and a 2x2 max-pool, then a 1x1 projection to ``dim``. A linear patch
    embedding, or stride-2 convolutions alone, could not tell a star from a square after 300 steps
    of direct shape classification on synth scenes; this stem reaches 98%."""
    steps = patch_size.bit_length() - 1
    widths = [channels] + [max(dim // 2 ** (steps - k), min_width) for k in range(steps)]
    layers: list[nn.Module] = []
    for k in range(steps):
        convs = 2 if k < steps - 1 else 1
        for c in range(convs):
            layers += [nn.Conv2d(widths[k + (c > 0)], widths[k + 1], 3, padding=1), nn.BatchNorm2d(widths[k + 1])]
            layers.append(nn.GELU())
        layers.append(nn.MaxPool2d(2))
    layers.append(nn.Conv2d(widths[-1], dim, kernel_size=1))
    return nn.Sequential(*layers)


class VisionEncoder(nn.Module):
    """ViT: patch embedding (linear or conv stem), learned positions, pre-norm blocks, final LayerNorm."""

    main_input_name = "pixel_values"

    def __init__(self, cfg: CapfleetCaptionerConfig) -> None:
        super().__init__()
        d = cfg.encoder_hidden_size
        self.conv_stem = cfg.stem == "conv"
        if self.conv_stem:
            self.patch_embed = conv_stem(cfg.num_channels, d, cfg.patch_size, cfg.stem_width)
        else:
            self.patch_embed = nn.Conv2d(cfg.num_channels, d, kernel_size=cfg.patch_size, stride=cfg.patch_size)
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.num_patches, d))
        self.dropout = nn.Dropout(cfg.dropout)
        self.layers = nn.ModuleList(EncoderBlock(cfg) for _ in range(cfg.encoder_layers))
        self.norm = nn.LayerNorm(d, eps=cfg.layer_norm_eps)
        grid = cfg.image_size // cfg.patch_size
        memory = sincos_positions(grid, d).unsqueeze(0) if cfg.memory_positions else None
        self.register_buffer("memory_positions", memory)  # saved with the weights: loading builds buffers empty
        self._memo: tuple[torch.Tensor, int, torch.Tensor] | None = None

    def _weights_version(self) -> int | None:
        """A number every in-place weight update changes; None for weights made under torch.inference_mode,
        which keep no version counter (the encoding is then never kept)."""
        try:
            return sum(p._version for p in self.parameters())
        except RuntimeError:
            return None

    def forward(
        self,
        pixel_values: torch.Tensor,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> BaseModelOutput:
        inference = not torch.is_grad_enabled() and not self.training and not output_hidden_states
        version = self._weights_version() if inference else None  # not in training: nothing is kept there
        remember = version is not None
        if remember and self._memo is not None:
            seen, seen_version, encoded = self._memo
            same = seen.shape == pixel_values.shape and seen.dtype == pixel_values.dtype
            if same and seen_version == version and torch.equal(seen, pixel_values):
                return BaseModelOutput(last_hidden_state=encoded)  # a new output: generate edits its own
        pixels = pixel_values.to(self.pos_embed.dtype)
        if self.conv_stem:
            # channels-last runs oneDNN's fast CPU conv and max-pool kernels (NCHW bf16 max-pool is the slow one);
            # same values up to float rounding
            pixels = pixels.contiguous(memory_format=torch.channels_last)
        x = self.patch_embed(pixels).flatten(2).transpose(1, 2) + self.pos_embed
        x = self.dropout(x)
        hidden = [x]
        for layer in self.layers:
            x = layer(x)
            hidden.append(x)
        x = self.norm(x)
        if self.memory_positions is not None:
            x = x + self.memory_positions.to(x.dtype)
        out = BaseModelOutput(last_hidden_state=x, hidden_states=tuple(hidden) if output_hidden_states else None)
        # Captioning encodes a batch to generate, then ranking (the same model as scorer) encodes it again:
        # the last inference encoding is kept and handed back for identical pixels.
        # a copy of the pixels: a caller may refill its own tensor in place before the next call
        self._memo = (pixel_values.clone(), version, out.last_hidden_state) if remember else None
        return out


class TextDecoder(nn.Module):
    """Causal decoder; with ``enc=None`` it is a plain causal text transformer (used for text features)."""

    def __init__(self, cfg: CapfleetCaptionerConfig) -> None:
        super().__init__()
        d = cfg.decoder_hidden_size
        self.embed_tokens = nn.Embedding(cfg.vocab_size, d, padding_idx=cfg.pad_token_id)
        self.embed_positions = nn.Embedding(cfg.max_position_embeddings, d)
        self.dropout = nn.Dropout(cfg.dropout)
        self.layers = nn.ModuleList(DecoderBlock(cfg, i) for i in range(cfg.decoder_layers))
        self.norm = nn.LayerNorm(d, eps=cfg.layer_norm_eps)

    def forward(
        self,
        input_ids: torch.Tensor,
        enc: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        cache: Cache | None = None,
        states: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Final-normed hidden states; ``states`` (if a list) collects every layer's input and the output."""
        bsz, q_len = input_ids.shape
        past = cache.get_seq_length() if cache is not None else 0
        if past + q_len > self.embed_positions.num_embeddings:
            raise ValueError(
                f"sequence length {past + q_len} > max_position_embeddings {self.embed_positions.num_embeddings}"
            )
        pos = torch.arange(past, past + q_len, device=input_ids.device)
        x = self.dropout(self.embed_tokens(input_ids) + self.embed_positions(pos))
        mask, is_causal = None, q_len > 1 and past == 0
        padded = attention_mask is not None and not bool(attention_mask.all())
        if padded or (past > 0 and q_len > 1):
            # explicit mask: causal (offset by the cache) AND key padding; a query always sees itself
            kv_len = past + q_len
            k_idx = torch.arange(kv_len, device=input_ids.device)
            mask = (k_idx[None, :] <= pos[:, None])[None, None]
            if padded:
                if attention_mask.shape[1] < kv_len:  # mask given for the new tokens only
                    attention_mask = F.pad(attention_mask, (kv_len - attention_mask.shape[1], 0), value=1)
                mask = mask & attention_mask[:, None, None, -kv_len:].bool()
            mask = mask | (k_idx[None, :] == pos[:, None])[None, None]
        for layer in self.layers:
            if states is not None:
                states.append(x)
            x = layer(x, enc, mask, is_causal, cache)
        x = self.norm(x)
        if states is not None:
            states.append(x)
        return x


def contrastive_loss(logits_per_text: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE of CLIP: row i of the (texts x images) similarity matrix should pick image i."""
    target = torch.arange(logits_per_text.shape[0], device=logits_per_text.device)
    return (F.cross_entropy(logits_per_text, target) + F.cross_entropy(logits_per_text.t(), target)) / 2


class CapfleetCaptionerPreTrainedModel(PreTrainedModel):
    config_class = CapfleetCaptionerConfig
    config: CapfleetCaptionerConfig
    base_model_prefix = "capfleet"
    main_input_name = "pixel_values"
    _no_split_modules = ["EncoderBlock", "DecoderBlock"]
    _supports_sdpa = True

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        std = self.config.initializer_range
        if isinstance(module, VisionEncoder):
            grid = self.config.image_size // self.config.patch_size
            grid_positions = sincos_positions(grid, module.pos_embed.shape[-1]).unsqueeze(0)
            if self.config.position_init == "sincos":
                with torch.no_grad():
                    module.pos_embed.copy_(grid_positions)
            else:
                init.normal_(module.pos_embed, mean=0.0, std=std)
            if module.memory_positions is not None:
                with torch.no_grad():
                    module.memory_positions.copy_(grid_positions)
            for conv in module.patch_embed.modules() if self.config.stem == "conv" else ():
                # torch's own Conv2d init, not N(0, 0.02): ahead of BatchNorm, so tiny weights mean huge relative
                # steps. With N(0, 0.02) the stem learnt shapes 5x slower (11% against 55% of held-out scenes'
                # objects named by the token object head after 300 encoder-only steps).
                if isinstance(conv, nn.Conv2d):
                    init.kaiming_uniform_(conv.weight, a=math.sqrt(5))
        elif isinstance(module, CapfleetCaptionerModel):
            init.constant_(module.logit_scale, self.config.logit_scale_init_value)


class CapfleetCaptionerModel(CapfleetCaptionerPreTrainedModel, GenerationMixin):
    """Captioner + scorer. ``forward`` gives the shifted LM loss (``labels`` or ``return_loss``) and, with
    ``return_loss`` or ``return_embeds``, CLIP-style image/text embeddings, logits and contrastive loss."""

    def __init__(self, config: CapfleetCaptionerConfig) -> None:
        super().__init__(config)
        self.encoder = VisionEncoder(config)
        self.decoder = TextDecoder(config)
        self.image_projection = nn.Linear(config.encoder_hidden_size, config.projection_dim, bias=False)
        self.text_projection = nn.Linear(config.decoder_hidden_size, config.projection_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(config.logit_scale_init_value))
        # which object each image token shows: an auxiliary training signal (see train.objects)
        classes = config.object_classes + (RELATION_SLOTS if config.object_classes and config.object_relations else 0)
        self.object_head = nn.Linear(config.encoder_hidden_size, classes) if classes else None
        # the student side of distillation's feature matching (see train.distill)
        width = config.feature_distill_dim
        self.feature_head = nn.Linear(config.encoder_hidden_size, width) if width else None
        self.post_init()

    def get_encoder(self, modality: str | None = None) -> VisionEncoder:
        return self.encoder

    def get_input_embeddings(self) -> nn.Embedding:
        return self.decoder.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.decoder.embed_tokens = value

    def _lm_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return F.linear(hidden, self.decoder.embed_tokens.weight)  # output embedding tied to the input one

    def _image_embeds(self, encoder_hidden: torch.Tensor) -> torch.Tensor:
        return self.image_projection(encoder_hidden.mean(dim=1))

    def _text_embeds(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        if attention_mask is None:
            attention_mask = (input_ids != self.config.pad_token_id).long()
        hidden = self.decoder(input_ids, enc=None, attention_mask=attention_mask)
        last = (attention_mask.long().sum(dim=1) - 1).clamp(min=0)  # EOS = last real token (right padding)
        return self.text_projection(hidden[torch.arange(hidden.shape[0], device=hidden.device), last])

    def get_image_features(self, pixel_values: torch.Tensor, **kwargs: Any) -> BaseModelOutputWithPooling:
        """Like ``CLIPModel.get_image_features``: ``pooler_output`` is the projected, unnormalised embedding."""
        enc = self.encoder(pixel_values).last_hidden_state
        return BaseModelOutputWithPooling(last_hidden_state=enc, pooler_output=self._image_embeds(enc))

    def get_text_features(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs: Any
    ) -> BaseModelOutputWithPooling:
        """Like ``CLIPModel.get_text_features``: ``pooler_output`` is the projected, unnormalised embedding
        of the decoder run without cross-attention, taken at the EOS (last non-pad) token."""
        return BaseModelOutputWithPooling(pooler_output=self._text_embeds(input_ids, attention_mask))

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        return_loss: bool = False,
        return_embeds: bool = False,
        return_objects: bool = False,
        encoder_outputs: BaseModelOutput | tuple | None = None,
        cache: Cache | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int = 0,
        decoder_input_ids: torch.Tensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> CapfleetCaptionerOutput:
        input_ids = input_ids if input_ids is not None else decoder_input_ids
        attention_mask = attention_mask if attention_mask is not None else decoder_attention_mask
        cache = cache if cache is not None else kwargs.get("past_key_values")
        if encoder_outputs is None:
            if pixel_values is None:
                raise ValueError("pass pixel_values or encoder_outputs")
            encoder_outputs = self.encoder(pixel_values)
        enc = encoder_outputs[0]
        out = CapfleetCaptionerOutput(encoder_last_hidden_state=enc)
        if return_objects:
            if self.object_head is None:
                raise ValueError("return_objects needs a model built with config.object_classes > 0")
            out.object_logits = self.object_head(enc)
        if self.feature_head is not None and self.training:
            out.distill_features = self.feature_head(enc)
        if input_ids is None:
            return out
        if use_cache and cache is None:
            cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
        states: list[torch.Tensor] | None = [] if kwargs.get("output_hidden_states") else None
        hidden = self.decoder(input_ids, enc=enc, attention_mask=attention_mask, cache=cache, states=states)
        out.decoder_hidden_states = tuple(states) if states is not None else None
        keep = hidden[:, -logits_to_keep:] if logits_to_keep else hidden
        out.logits = self._lm_logits(keep)
        out.cache = cache if use_cache is not False else None
        if labels is None and return_loss:
            labels = input_ids.masked_fill(input_ids == self.config.pad_token_id, -100)
            if attention_mask is not None:
                labels = labels.masked_fill(attention_mask == 0, -100)
        if labels is not None:
            logits = out.logits if not logits_to_keep else self._lm_logits(hidden)
            out.lm_loss = F.cross_entropy(
                logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=-100
            )
            out.loss = out.lm_loss
        if return_loss or return_embeds:
            out.image_embeds = self._image_embeds(enc)
            out.text_embeds = self._text_embeds(input_ids, attention_mask)
            out.logit_scale = self.logit_scale.exp().clamp(max=100.0)
            img = F.normalize(out.image_embeds.float(), dim=-1)
            txt = F.normalize(out.text_embeds.float(), dim=-1)
            out.logits_per_text = out.logit_scale * txt @ img.t()
            out.logits_per_image = out.logits_per_text.t()
            if return_loss:
                out.contrastive_loss = contrastive_loss(out.logits_per_text)
                out.loss = out.contrastive_loss if out.loss is None else out.loss + out.contrastive_loss
        return out

    def prepare_inputs_for_generation(
        self,
        input_ids: torch.Tensor,
        next_sequence_length: int | None = None,
        cache: Cache | None = None,
        encoder_outputs: BaseModelOutput | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """Feeds only the not-yet-cached decoder tokens; the encoder output comes from ``generate``."""
        cache = cache if cache is not None else kwargs.get("past_key_values")
        if next_sequence_length is not None:
            input_ids = input_ids[:, -next_sequence_length:]
        elif cache is not None and cache.get_seq_length() > 0:
            input_ids = input_ids[:, cache.get_seq_length() :]
        inputs: dict[str, Any] = {
            "input_ids": input_ids.contiguous(),
            "encoder_outputs": encoder_outputs,
            "attention_mask": decoder_attention_mask,
            "cache": cache,
            "use_cache": use_cache,
        }
        if encoder_outputs is None:
            inputs["pixel_values"] = kwargs.get("pixel_values")
        if logits_to_keep:
            inputs["logits_to_keep"] = logits_to_keep
        if kwargs.get("output_hidden_states"):
            inputs["output_hidden_states"] = True
        return inputs

    @torch.no_grad()
    def score(
        self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(images x texts) scaled cosine similarities, as CLIP's ``logits_per_image``: ranks any number of
        candidate captions against any number of images."""
        img = F.normalize(self.get_image_features(pixel_values).pooler_output.float(), dim=-1)
        txt = F.normalize(self.get_text_features(input_ids, attention_mask).pooler_output.float(), dim=-1)
        return self.logit_scale.exp().clamp(max=100.0).float() * img @ txt.t()


def register_auto_classes() -> None:
    """Make ``Auto*.from_pretrained(dir)`` resolve ``model_type == "capfleet-captioner"`` (idempotent)."""
    import transformers

    AutoConfig.register(MODEL_TYPE, CapfleetCaptionerConfig, exist_ok=True)
    for name in ("AutoModel", "AutoModelForImageTextToText", "AutoModelForVision2Seq"):
        auto = getattr(transformers, name, None)
        if auto is not None:
            auto.register(CapfleetCaptionerConfig, CapfleetCaptionerModel, exist_ok=True)


register_auto_classes()
