"""What every engine shares: per-image seeds and how a batch reports the images it could not caption."""

from __future__ import annotations

import hashlib


class PartialBatchError(RuntimeError):
    """Some images of a batch got captions and some did not (a request that failed for good).

    `candidates[i]` is None exactly for the images in `errors`, whose messages become those
    images' error records; the rest of the batch is kept.
    """

    def __init__(self, candidates: list[list[str] | None], errors: dict[int, str]):
        super().__init__(f"{len(errors)} of {len(candidates)} images failed: {next(iter(errors.values()), '')}")
        self.candidates = candidates
        self.errors = errors


def derive_seed(*parts) -> int:
    """A 31-bit seed from any values (servers and vLLM take a plain int)."""
    return int.from_bytes(hashlib.sha256(":".join(map(str, parts)).encode()).digest()[:4], "little") >> 1


def per_image_seeds(seeds: list[int] | None, count: int) -> list[int | None]:
    """The images' seeds cut to 31 bits (servers and vLLM take a plain int); None leaves sampling unseeded."""
    if seeds is None:
        return [None] * count
    return [derive_seed(seed) for seed in seeds]


def distinct_texts(texts: list[str], limit: int) -> list[str]:
    """Whitespace-normalised, non-empty, first occurrence kept, at most `limit`: as HFCaptioner returns."""
    return list(dict.fromkeys(" ".join(text.split()) for text in texts if text and text.strip()))[:limit]
