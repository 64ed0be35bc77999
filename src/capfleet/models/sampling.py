"""Nucleus sampling whose draws belong to each image, not to the batch it happened to be in.

HF `generate` samples every row from one global generator, so an image's captions would depend
on its batch neighbours, the batch size and any retry. Here each candidate row owns a generator
seeded from (run seed, image key, candidate index) and picks its token by the Gumbel-max trick:
argmax over the nucleus of logit + Gumbel noise, which samples exactly from the nucleus
distribution. Unlike inverse-CDF sampling over sorted probabilities, the choice barely moves under
the last-bit float differences that batching and padding cause (a flip needs two noisy scores
within ~1e-7 of each other, not one of thousands of cumulative-sum boundaries). The processor
leaves one token per row, which HF's own sampling step then has to take.
"""

from __future__ import annotations

import hashlib

import torch
from transformers import LogitsProcessor


def image_seed(seed: int, key: str) -> int:
    """An image's own seed: a function of the run seed and its key only."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:8], "little")


class PerImageNucleusSampler(LogitsProcessor):
    """Chooses each row's next token from its own generator (rows are image-major,
    `num_candidates` per image, as HF expands `num_return_sequences`)."""

    def __init__(self, seeds: list[int], num_candidates: int, top_p: float, temperature: float = 1.0):
        self.row_seeds = [
            int(row_seed)
            for seed in seeds
            for row_seed in torch.randint(2**62, (num_candidates,), generator=torch.Generator().manual_seed(seed))
        ]
        self.top_p = top_p
        self.temperature = temperature  # > 0; the nucleus is taken from the tempered distribution
        self.generators: list[torch.Generator] = []

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if not self.generators:
            self.generators = [torch.Generator(scores.device).manual_seed(seed) for seed in self.row_seeds]
        if scores.shape[0] != len(self.generators):
            raise RuntimeError(f"sampler built for {len(self.generators)} rows got {scores.shape[0]}")
        logits = scores.float() / self.temperature
        uniforms = torch.stack(
            [torch.rand(logits.shape[-1], generator=g, device=logits.device) for g in self.generators]
        )
        gumbel = -torch.log(-torch.log(uniforms))  # a uniform of exactly 0 gives -inf: never chosen
        chosen = (logits + gumbel).argmax(dim=-1, keepdim=True)
        if self.top_p < 1:
            unsure = self._outside_or_unsure(torch.softmax(logits, dim=-1), chosen)
            if unsure.any():
                chosen[unsure] = self._nucleus_choice(logits[unsure], gumbel[unsure])
        return scores.fill_(float("-inf")).scatter_(-1, chosen, 0.0)

    def _outside_or_unsure(self, probs: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
        """Rows whose unrestricted Gumbel winner is not surely inside the nucleus.

        A token is in the nucleus when the mass ranked before it is below top_p. Counting every
        token at least as likely (ties included) bounds that mass from above, so a winner under
        the bound (with a margin for summation order) is the nucleus winner too, without sorting
        the vocabulary. Only the other rows (about 1 - top_p of them) pay for the sort.
        """
        winner = probs.gather(-1, chosen)
        before = (probs * (probs >= winner)).sum(-1) - winner.squeeze(-1)
        return before >= self.top_p - 1e-4

    def _nucleus_choice(self, logits: torch.Tensor, gumbel: torch.Tensor) -> torch.Tensor:
        probs, order = torch.softmax(logits, dim=-1).sort(dim=-1, descending=True)
        # The nucleus: the most likely tokens until their mass reaches top_p (always at least one).
        outside = (probs.cumsum(-1) - probs) >= self.top_p
        logits = logits.scatter(-1, order, logits.gather(-1, order).masked_fill(outside, float("-inf")))
        return (logits + gumbel).argmax(dim=-1, keepdim=True)
