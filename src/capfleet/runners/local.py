"""The default runner: plan once, then process pending shards in this process."""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from capfleet.config import ConfigError, RunConfig
from capfleet.cpus import busy_note
from capfleet.models.registry import (
    CAPTIONER_ALIASES,
    SCORER_ALIASES,
    load_captioner,
    load_scorer,
    resolve_name,
)
from capfleet.models.runtime import use_threads
from capfleet.runners.progress import Progress
from capfleet.runners.shard_processor import ShardProcessor, ShardStats
from capfleet.runners.state import RunState
from capfleet.sinks.location import Location
from capfleet.sources import open_source
from capfleet.sources.plan import ShardSpec

log = logging.getLogger("capfleet")


@dataclass
class RunSummary:
    shards: int = 0
    shards_done_before: int = 0
    skipped: int = 0
    stats: ShardStats = field(default_factory=ShardStats)
    wall_seconds: float = 0.0

    @classmethod
    def planned(cls, shards: list[ShardSpec], pending: list[ShardSpec]) -> RunSummary:
        """What a run starts from: its shards, and the images earlier runs already finished."""
        skipped = sum(len(s.items) for s in shards) - sum(len(s.items) for s in pending)
        return cls(shards=len(shards), shards_done_before=len(shards) - len(pending), skipped=skipped)

    @property
    def images_per_second(self) -> float:
        return self.stats.seen / self.wall_seconds if self.wall_seconds > 0 else 0.0

    def lines(self) -> list[str]:
        return [
            f"shards: {self.shards} ({self.shards_done_before} already done)",
            f"seen: {self.stats.seen}  captioned: {self.stats.captioned}  failed: {self.stats.failed}  "
            f"skipped (already done): {self.skipped}",
            f"time: {self.wall_seconds:.1f} s  ({self.images_per_second:.2f} images/s)",
        ]


def check_model_names(config: RunConfig) -> None:
    """Fail on a misspelt model name before listing a million files."""
    if config.captioner != "none":
        resolve_name(config.captioner, CAPTIONER_ALIASES, "captioner")
    if config.captioner != "none" and config.scorer != "none":
        resolve_name(config.scorer, SCORER_ALIASES, "scorer")


def load_models(config: RunConfig):
    """Captioner and scorer for a run, loaded once per process (or Beam worker)."""
    threads = use_threads(config.threads)
    note = busy_note(threads) if config.threads is None else None
    if note:
        log.warning(note)
    captioner = None
    if config.captioner != "none":
        captioner = load_captioner(
            config.captioner,
            device=config.device,
            dtype=config.dtype,
            decoding=config.decoding,
            top_p=config.top_p,
            max_new_tokens=config.max_new_tokens,
        )
        if config.prompt and not captioner.accepts_prompt:
            raise ConfigError(f"captioner {config.captioner} takes no prompt: drop --prompt or use BLIP, GIT or a VLM")
    scorer = load_scorer(config.scorer, device=config.device, dtype=config.dtype) if captioner is not None else None
    return captioner, scorer


def prepare_run(config: RunConfig) -> tuple[RunState, list[ShardSpec], list[ShardSpec]]:
    """Check/record OUT, list inputs on a first run, and split shards into all and pending."""
    config.validate()
    check_model_names(config)
    state = RunState(Location(config.output))
    resuming = state.prepare(config)
    if resuming:
        log.info("resuming the run in %s", config.output)
    else:
        state.record_run(config, open_source(config.inputs).listing())
    shards = state.plan(config)
    done = state.done_counts()
    pending = [shard for shard in shards if done.get(shard.name) != len(shard.items)]
    return state, shards, pending


def run_local(config: RunConfig, models=None) -> RunSummary:
    started = time.perf_counter()
    state, shards, pending = prepare_run(config)
    summary = RunSummary.planned(shards, pending)
    if pending:
        captioner, scorer = models if models is not None else load_models(config)
        progress = Progress(sum(len(s.items) for s in pending), config.progress)
        try:
            with ThreadPoolExecutor(config.workers, thread_name_prefix="capfleet-io") as executor:
                processor = ShardProcessor(config, open_source(config.inputs), captioner, scorer, executor, progress)
                for shard in pending:
                    summary.stats.add(processor.process_with_retries(shard))
        finally:
            progress.close()
    summary.wall_seconds = time.perf_counter() - started
    return summary
