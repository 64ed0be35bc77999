"""How captions are decoded, and every decoding default capfleet has, written once.

The CLI, `RunConfig`, `capfleet.load(...).caption`, the HTTP service, `capfleet bench` and the distillation
teacher all read their defaults from here. Light on purpose (torch only inside `generate_kwargs`):
`capfleet.config` imports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DECODINGS = ("sample", "beam")
CANDIDATES = 5  # candidate captions per image; the best-scored is kept


@dataclass
class DecodingOptions:
    decoding: str = "sample"
    top_p: float = 0.9
    max_new_tokens: int = 30
    temperature: float = 1.0  # sampling only; the service's OpenAI endpoint sets it

    @classmethod
    def of_run(cls, config) -> DecodingOptions:
        """A run's decoding settings (a RunConfig's `decoding`, `top_p`, `max_new_tokens`)."""
        return cls(config.decoding, config.top_p, config.max_new_tokens)

    def generate_kwargs(self, num_candidates: int, seeds: list[int]) -> dict[str, Any]:
        """Beam search is deterministic; sampling draws from each image's own seed (see sampling.py)."""
        from capfleet.models.sampling import PerImageNucleusSampler

        common = {"max_new_tokens": self.max_new_tokens, "num_return_sequences": num_candidates}
        if self.decoding == "beam":
            return {**common, "do_sample": False, "num_beams": max(num_candidates, 3)}
        sampler = PerImageNucleusSampler(seeds, num_candidates, self.top_p, self.temperature)
        # HF's own warpers stay off: the sampler leaves one token per row for HF's draw to take.
        return {**common, "do_sample": True, "top_p": 1.0, "top_k": 0, "num_beams": 1, "logits_processor": [sampler]}


DEFAULT = DecodingOptions()
