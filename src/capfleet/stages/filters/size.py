"""Size filter: too small or too elongated to caption well, judged on the stored image's size."""

from __future__ import annotations

from dataclasses import dataclass

from capfleet.options import option
from capfleet.sample import Sample
from capfleet.stages.filters.base import PANEL, reject

NAME = "size"
EXTRA = None
REQUIRES: tuple[str, ...] = ()
PREPASS = False


@dataclass
class Options:
    min_side: int | None = option(
        None, "Filter images whose shorter side is below this (pixels).", fingerprint="if_set", panel=PANEL
    )
    max_aspect_ratio: float | None = option(
        None,
        "Filter images longer than this ratio (default: beyond 20:1 is a decode error).",
        fingerprint="if_set",
        panel=PANEL,
    )


def check(config) -> list[str]:
    checks = [
        (config.min_side is None or config.min_side >= 1, "--min-side must be >= 1"),
        (config.max_aspect_ratio is None or config.max_aspect_ratio >= 1, "--max-aspect-ratio must be >= 1"),
    ]
    return [message for ok, message in checks if not ok]


def load(config) -> SizeFilter | None:
    if config.min_side is None and config.max_aspect_ratio is None:
        return None
    return SizeFilter(config.min_side, config.max_aspect_ratio)


class SizeFilter:
    name = "size"
    decode_side = 0  # judged on the stored size: any decoded size will do

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
