"""BLIP's vision attention through torch's fused `scaled_dot_product_attention`, for float32 models.

transformers (5.x) runs BLIP only in eager attention (`_supports_sdpa` is False; `attn_implementation`
is ignored): two batched matmuls over 577 x 577 scores per head with a softmax between. The fused
kernel computes the same attention without materialising the scores. In float32, the dtype on CPUs
without native bf16 (where `--dtype auto` quantises only the linear layers to int8, not these matmuls),
whole runs of full-size BLIP + CLIP (int8 linear layers, 1 thread) ran 1.20x as fast; in bf16 nothing measurable, so
capfleet's loader fuses float32 models only (benchmarks/README.md, bench_blip_attention.py). The weights are
untouched: only the class of each vision attention module changes, so state dicts, int8
quantisation and `save_pretrained` see the same model.
"""

from __future__ import annotations

import torch
from transformers.models.blip.modeling_blip import BlipAttention


class FusedBlipAttention(BlipAttention):
    """`BlipAttention` with one fused attention call; eager (HF's own) when training or asked for weights."""

    def forward(self, hidden_states: torch.Tensor, **kwargs):
        if self.training or kwargs.get("output_attentions"):
            return super().forward(hidden_states, **kwargs)
        batch, tokens, width = hidden_states.shape
        qkv = self.qkv(hidden_states).view(batch, tokens, 3, self.num_heads, self.head_dim)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        context = torch.nn.functional.scaled_dot_product_attention(query, key, value, scale=self.scale)
        return self.projection(context.transpose(1, 2).reshape(batch, tokens, width)), None


def fuse_vision_attention(model: torch.nn.Module) -> None:
    """Switch every BLIP vision attention module of `model` to the fused one, in place."""
    for module in model.modules():
        if type(module) is BlipAttention:
            module.__class__ = FusedBlipAttention
