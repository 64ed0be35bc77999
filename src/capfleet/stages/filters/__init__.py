"""Filters: per-sample stages run in the reader threads after decoding, before captioning.

Each filter is a plugin module (capfleet.plugins) whose `load(config)` gives the filter its
options ask for, or None. A filter either adds its score to the sample's row fields or marks
the sample filtered (`Sample.filtered`, a record in _capfleet/filtered/). The first filter that
rejects wins; they run in registry order, the cheap ones first. A plugin with `PREPASS = True`
(dedup) needs every shard read before any is captioned; its filter is given each shard's verdicts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from capfleet import plugins
from capfleet.sample import Sample

if TYPE_CHECKING:
    from capfleet.config import RunConfig


def _loaded(config: RunConfig) -> list[tuple[bool, object]]:
    """(prepass, filter) for every filter the settings turn on, models loaded (once per process)."""
    loaded = [(module.PREPASS, module.load(config)) for module in plugins.modules("filter")]
    return [(prepass, stage) for prepass, stage in loaded if stage is not None]


def check_filters(config: RunConfig) -> None:
    """Fail on the launcher, before any work, when a filter's package or model is missing or wrong."""
    _loaded(config)


def needs_prepass(config: RunConfig) -> bool:
    """True when a filter must see every shard before any is captioned (the runners' hash phase)."""
    return any(module.PREPASS and module.load(config) is not None for module in plugins.modules("filter"))


class FilterChain:
    """The filters of a run; `for_shard` hands the prepass filters that shard's verdicts."""

    def __init__(self, config: RunConfig, verdicts: Callable[[str], dict[str, dict]] | None = None):
        loaded = _loaded(config)
        self.filters = [stage for prepass, stage in loaded if not prepass]
        self.prepass = [stage for prepass, stage in loaded if prepass] if verdicts is not None else []
        self.verdicts = verdicts
        self.decode_side = max((stage.decode_side for stage in self.filters), default=0)
        self.empty = not self.filters and not self.prepass

    def for_shard(self, shard_name: str) -> Callable[[Sample], Sample]:
        shard_verdicts = self.verdicts(shard_name) if self.prepass else {}
        filters = [stage.for_shard(shard_verdicts) for stage in self.prepass] + self.filters

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
