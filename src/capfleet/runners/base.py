"""The contract between a run and the engine that runs its shards.

A run has one owner of its lifecycle (`runners/lifecycle.py`: checks, lock, listing and plan,
the phases, the summary). A runner only maps `ShardTask`s over workers and sums their
`ShardStats`: in this process (`local`), one process per GPU (`gpus`), Ray actors (`ray`).
Each worker holds one `ShardWorker`, built once per process, so models load once per worker.
Adding a runner is one module with a `Runner` and one line in `lifecycle.RUNNERS`.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from capfleet.config import RunConfig
from capfleet.sources.plan import ShardSpec

if TYPE_CHECKING:  # the CLI imports this module for RunnerError: keep torch out of it
    from capfleet.runners.shard_processor import ShardProcessor, ShardStats

HASH, CAPTION = "hash", "caption"


class RunnerError(RuntimeError):
    """Some shards failed for good on the runner's workers; finished shards are kept, a rerun resumes."""


@dataclass(frozen=True)
class ShardTask:
    """One unit a runner maps: picklable, so it crosses processes and machines."""

    phase: str  # HASH (dedup's first pass) or CAPTION
    shard: ShardSpec
    retry_keys: frozenset[str] | None = None  # --retry-errors: read only these keys of a finished shard


class ShardWorker:
    """What one process needs to do ShardTasks: the source, the reader threads and, for captioning,
    the models (loaded on first use, once: a hash phase loads none)."""

    def __init__(self, config: RunConfig, models: tuple | None = None, progress=None, source=None, **processor_options):
        self.config = config
        self._models = models
        self.progress = progress
        self._processor_options = processor_options  # pending_images, before_publish, helpers (ShardProcessor)
        self._processor: ShardProcessor | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._source = source

    @property
    def executor(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self.config.workers, thread_name_prefix="capfleet-io")
        return self._executor

    @property
    def source(self):
        if self._source is None:
            from capfleet.sources import open_source

            self._source = open_source(self.config.inputs, self.config)
        return self._source

    @property
    def processor(self) -> ShardProcessor:
        if self._processor is None:
            from capfleet.runners.models import load_models
            from capfleet.runners.shard_processor import ShardProcessor

            captioner, scorer = self._models if self._models is not None else load_models(self.config)
            self._processor = ShardProcessor(
                self.config, self.source, captioner, scorer, self.executor, self.progress, **self._processor_options
            )
        return self._processor

    def do(self, task: ShardTask) -> ShardStats:
        """Hash or caption one shard; a captioned shard is published and marked done as always."""
        if task.phase == HASH:
            from capfleet.runners import dedup
            from capfleet.runners.shard_processor import ShardStats

            count = dedup.hash_shard(task.shard, self.source, self.executor, self.config)
            if self.progress is not None:
                self.progress.update(count)
            return ShardStats(seen=count)
        processor = self.processor
        processor.progress = self.progress
        keys = set(task.retry_keys) if task.retry_keys is not None else None
        return processor.process_with_retries(task.shard, keys)

    def close(self) -> None:
        """Stop the reader threads without waiting on a read stuck on a dead mount or a silent server."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None


class Runner(Protocol):
    """Where shard tasks run. `map` returns once every task's outcome is known."""

    name: str
    loads_models: bool  # False: its workers load their own, the launcher loads none

    def prepare(self, config: RunConfig, run) -> None:
        """Called under the run's lock, before the first `map`, with the started run."""
        ...

    def map(self, config: RunConfig, tasks: list[ShardTask], progress) -> ShardStats:
        """Do every task (retrying as the engine does); raise RunnerError if any failed for good."""
        ...

    def close(self) -> None: ...
