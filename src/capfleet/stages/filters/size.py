"""Size filter: too small or too elongated to caption well, judged on the stored image's size."""

from __future__ import annotations

from capfleet.sample import Sample
from capfleet.stages.filters.base import reject


class SizeFilter:
    name = "size"

    def __init__(self, min_side: int | None, max_aspect_ratio: float | None):
        self.min_side = min_side
        self.max_aspect_ratio = max_aspect_ratio

    def apply(self, sample: Sample) -> None:
        width, height = sample.original_size or sample.image.size
        if self.min_side is not None and min(width, height) < self.min_side:
            reject(sample, "min_side", min(width, height), self.min_side)
            return
        ratio = max(width, height) / max(1, min(width, height))
        if self.max_aspect_ratio is not None and ratio > self.max_aspect_ratio:
            reject(sample, "aspect_ratio", round(ratio, 3), self.max_aspect_ratio)
