"""Configuration of capfleet's small captioner (ViT encoder + transformer decoder + CLIP-style heads).

The config is flat (``encoder_*`` / ``decoder_*`` fields) because transformers' generation code derives the
decoder cache layout from ``config.get_text_config(decoder=True)``, which maps ``decoder_layers`` to
``num_hidden_layers`` for flat encoder-decoder configs.
"""

from __future__ import annotations

from typing import Any

from transformers import PretrainedConfig

MODEL_TYPE = "capfleet-captioner"
STEMS = ("patch", "conv")
POSITION_INITS = ("normal", "sincos")
# the directions of a token's relation logits, in order: its object is left of / right of / above / below another
# object (train/objects.py reads the targets off a scene graph)
RELATION_FLAGS = ("left of", "right of", "above", "below")

# name -> sizes; everything else keeps the config defaults.
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(
        patch_size=8,
        encoder_hidden_size=64,
        encoder_layers=2,
        encoder_attention_heads=2,
        decoder_hidden_size=64,
        decoder_layers=2,
        decoder_attention_heads=2,
        projection_dim=32,
    ),
    "small": dict(
        patch_size=8,
        encoder_hidden_size=256,
        encoder_layers=6,
        encoder_attention_heads=4,
        decoder_hidden_size=256,
        decoder_layers=4,
        decoder_attention_heads=4,
        projection_dim=128,
    ),
    "base": dict(
        patch_size=16,
        encoder_hidden_size=512,
        encoder_layers=8,
        encoder_attention_heads=8,
        decoder_hidden_size=512,
        decoder_layers=6,
        decoder_attention_heads=8,
        projection_dim=256,
    ),
}


class CapfleetCaptionerConfig(PretrainedConfig):
    """Sizes and special token ids of :class:`CapfleetCaptionerModel` (fields are dataclass fields in
    transformers 5, so unknown keys in ``config.json`` are kept as plain attributes)."""

    model_type = MODEL_TYPE

    vocab_size: int = 1000
    image_size: int = 64
    patch_size: int = 8
    stem: str = "patch"  # "patch": one linear patch embedding (ViT); "conv": stride-2 3x3 convolutions
    stem_width: int = 16  # the conv stem's narrowest (full-resolution) width: most of a small model's cost
    num_channels: int = 3
    # "normal": image-token positions start at N(0, initializer_range), drowned by the conv stem's unit-scale
    # features; "sincos": a unit-scale 2-D sine/cosine grid (still learnt), so tokens say where they are
    position_init: str = "normal"
    # True: the encoder's output tokens also carry a fixed 2-D sine/cosine grid, so the decoder's cross-attention
    # reads where each token is however much the encoder layers kept of the input positions (issue 24)
    memory_positions: bool = False
    encoder_hidden_size: int = 128
    encoder_layers: int = 2
    encoder_attention_heads: int = 4
    decoder_hidden_size: int = 128
    decoder_layers: int = 2
    decoder_attention_heads: int = 4
    mlp_ratio: float = 4.0
    max_position_embeddings: int = 64
    projection_dim: int = 64
    object_classes: int = 0  # >0: a linear head on each image token, for TrainConfig.object_loss_weight
    # with object_classes: the head also says, per token, in which directions its object stands to another object
    # (one logit per RELATION_FLAGS direction), a dense target that makes the encoder compare positions
    object_relations: bool = False
    # with an object head over synth's classes: decoding masks relation words the object map denies
    # (modeling/relation_grounding.py): the decoder alone said the wrong direction in a quarter of its claims
    ground_relations: bool = False
    feature_distill_dim: int = 0  # >0: a linear map of each image token to a teacher's width (capfleet distill)
    logit_scale_init_value: float = 2.6592  # log(1 / 0.07), as in CLIP
    dropout: float = 0.0
    layer_norm_eps: float = 1e-5
    initializer_range: float = 0.02
    pad_token_id: int | None = 0
    bos_token_id: int | None = 1
    eos_token_id: int | None = 2
    decoder_start_token_id: int | None = 1
    is_encoder_decoder: bool = True

    def __post_init__(self, **kwargs: Any) -> None:
        super().__post_init__(**kwargs)
        for prefix in ("encoder", "decoder"):
            hidden = getattr(self, f"{prefix}_hidden_size")
            heads = getattr(self, f"{prefix}_attention_heads")
            if hidden % heads:
                raise ValueError(f"{prefix}_hidden_size={hidden} not divisible by {prefix}_attention_heads={heads}")
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size={self.image_size} not divisible by patch_size={self.patch_size}")
        if self.stem not in STEMS:
            raise ValueError(f"stem={self.stem!r}; choose from {STEMS}")
        if self.position_init not in POSITION_INITS:
            raise ValueError(f"position_init={self.position_init!r}; choose from {POSITION_INITS}")
        if self.ground_relations and not self.object_classes:
            raise ValueError("ground_relations reads the object head's map: it needs object_classes > 0")
        if self.stem_width < 1:
            raise ValueError(f"stem_width must be >= 1, got {self.stem_width}")
        if self.stem == "conv" and self.patch_size & (self.patch_size - 1):
            raise ValueError(f"a conv stem needs a power-of-two patch_size, got {self.patch_size}")

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2


def preset_config(name: str, vocab_size: int, image_size: int = 64, **overrides: Any) -> CapfleetCaptionerConfig:
    """Config for a named size preset (tiny/small/base); ``overrides`` win over preset values."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}")
    values = {**PRESETS[name], **overrides}
    return CapfleetCaptionerConfig(vocab_size=vocab_size, image_size=image_size, **values)
