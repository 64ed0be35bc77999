"""The two layers both halves of the captioner are built from: SDPA attention (self or cross, with the
decoder's KV cache) and the transformer MLP."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers.cache_utils import Cache, EncoderDecoderCache


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
