"""Nucleus sampling whose draws belong to each image, not to the batch it happened to be in.

HF `generate` samples every row from one global generator, so an image's captions would depend
on its batch neighbours, the batch size and any retry. Here each image owns a generator seeded
from (run seed, image key); it pre-draws one uniform number per candidate and step, and a logits
processor turns each row's nucleus into a one-hot choice by inverse CDF. HF's own sampling step
then has only that token left, so the rows are the same whatever batch the image was in.
"""

from __future__ import annotations

import hashlib

import torch
from transformers import LogitsProcessor


def image_seed(seed: int, key: str) -> int:
    """An image's own seed: a function of the run seed and its key only."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:8], "little")


class PerImageNucleusSampler(LogitsProcessor):
    """Chooses each row's next token from its own pre-drawn uniforms (rows are image-major,
    `num_candidates` per image, as HF expands `num_return_sequences`)."""

    def __init__(self, seeds: list[int], num_candidates: int, max_new_tokens: int, top_p: float):
        draws = []
        for seed in seeds:
            generator = torch.Generator().manual_seed(seed)
            draws.append(torch.rand(num_candidates, max_new_tokens, generator=generator))
        self.uniforms = torch.cat(draws)  # (images * candidates, steps)
        self.top_p = top_p
        self.prompt_length: int | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.prompt_length is None:
            self.prompt_length = input_ids.shape[1]
            self.uniforms = self.uniforms.to(scores.device)
        step = input_ids.shape[1] - self.prompt_length
        if scores.shape[0] != self.uniforms.shape[0] or step >= self.uniforms.shape[1]:
            shape = tuple(self.uniforms.shape)
            raise RuntimeError(f"sampler built for {shape} (rows, steps) got rows {scores.shape[0]}, step {step}")
        sorted_probs, order = torch.softmax(scores, dim=-1).sort(dim=-1, descending=True, stable=True)
        cumulative = sorted_probs.cumsum(-1)
        # The nucleus is a prefix: the most likely tokens until their mass reaches top_p (at least one).
        # A target at most the nucleus mass lands inside it (searchsorted takes the first index reaching it).
        nucleus_size = ((cumulative - sorted_probs) < self.top_p).sum(-1, keepdim=True)
        nucleus_mass = cumulative.gather(-1, nucleus_size - 1)
        target = self.uniforms[:, step : step + 1] * nucleus_mass
        chosen = order.gather(-1, torch.searchsorted(cumulative, target))
        return scores.fill_(float("-inf")).scatter_(-1, chosen, 0.0)
