"""The captioner's image side: a ViT over a linear patch embedding or a small conv stem."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_outputs import BaseModelOutput

from .attention import MLP, Attention
from .configuration import CapfleetCaptionerConfig


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

    def forward(
        self,
        pixel_values: torch.Tensor,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> BaseModelOutput:
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
        return BaseModelOutput(last_hidden_state=x, hidden_states=tuple(hidden) if output_hidden_states else None)
