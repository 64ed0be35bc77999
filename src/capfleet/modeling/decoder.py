"""The captioner's text side: a causal transformer decoder whose blocks cross-attend to the image tokens."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers.cache_utils import Cache

from .attention import MLP, Attention
from .configuration import CapfleetCaptionerConfig


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
