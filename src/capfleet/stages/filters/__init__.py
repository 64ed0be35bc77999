"""Filters: per-sample stages run in the reader threads after decoding, before captioning.

Each filter either adds its score to the sample's row fields or marks the sample filtered
(`Sample.filtered`, a record in _capfleet/filtered/). The first filter that rejects wins; the
cheap ones run first. Which filters run follows from the run's settings alone.
"""

from __future__ import annotations

from collections.abc import Callable

from capfleet.config import RunConfig
from capfleet.sample import Sample
from capfleet.stages.filters.dedup import DEFAULT_DISTANCE, DuplicateFilter

DEFAULT_WATERMARK_THRESHOLD = 0.5


def uses_ocr(config: RunConfig) -> bool:
    return config.max_text_area is not None or "{ocr_text}" in (config.prompt or "")


def near_distance(config: RunConfig) -> int | None:
    """The Hamming distance of near-duplicate search, None when only exact copies count."""
    if config.dedup != "near":
        return None
    return config.dedup_distance if config.dedup_distance is not None else DEFAULT_DISTANCE


def build_filters(config: RunConfig) -> list:
    """The content filters of a run, models loaded (once per process); raises ConfigError early."""
    from capfleet.stages.filters.size import SizeFilter

    filters: list = []
    if config.min_side is not None or config.max_aspect_ratio is not None:
        filters.append(SizeFilter(config.min_side, config.max_aspect_ratio))
    if config.watermark_model is not None:
        from capfleet.stages.filters.watermark import WatermarkFilter

        threshold = config.watermark_threshold
        filters.append(
            WatermarkFilter(config.watermark_model, DEFAULT_WATERMARK_THRESHOLD if threshold is None else threshold)
        )
    if uses_ocr(config):
        from capfleet.stages.filters.ocr import TextOverlayFilter

        filters.append(TextOverlayFilter(config.max_text_area))
    if config.nsfw_threshold is not None:
        from capfleet.stages.filters.nsfw import NsfwFilter

        filters.append(NsfwFilter(config.nsfw_threshold))
    return filters


def check_filters(config: RunConfig) -> None:
    """Fail on the launcher, before any work, when a filter's package or model is missing or wrong."""
    from capfleet.stages.filters.base import require

    build_filters(config)
    if config.dedup is not None:
        require("imagehash", "dedup", "--dedup")


class FilterChain:
    """The filters of a run; `for_shard` adds that shard's duplicate verdicts."""

    def __init__(self, config: RunConfig, verdicts: Callable[[str], dict[str, dict]] | None = None):
        self.filters = build_filters(config)
        self.verdicts = verdicts if config.dedup is not None else None
        self.distance = near_distance(config)
        self.decode_side = max((getattr(f, "decode_side", 0) for f in self.filters), default=0)

    def for_shard(self, shard_name: str) -> Callable[[Sample], Sample]:
        filters = list(self.filters)
        if self.verdicts is not None:
            filters.insert(0, DuplicateFilter(self.verdicts(shard_name), self.distance))

        def screen(sample: Sample) -> Sample:
            if sample.error is not None:
                return sample
            for stage in filters:
                try:
                    stage.apply(sample)
                except Exception as exc:  # a model failing on one image costs that image only
                    sample.error = f"filter {stage.name} failed: {type(exc).__name__}: {exc}"
                    return sample
                if sample.filtered is not None:
                    return sample
            return sample

        return screen
