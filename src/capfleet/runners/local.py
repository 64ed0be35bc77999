"""The in-process runner: every shard task in this process, with the models the run loaded."""

from __future__ import annotations

from capfleet.config import RunConfig
from capfleet.runners.base import ShardTask, ShardWorker
from capfleet.runners.shard_processor import ShardStats


class LocalRunner:
    name = "local"
    loads_models = True

    def __init__(self, config: RunConfig):
        self.worker: ShardWorker | None = None  # built in `prepare`, on the models the run loaded

    def prepare(self, config: RunConfig, run) -> None:
        """One worker on the models and source the run opened, guarded by its lock (a lost lease stops it)."""
        pending_images = sum(shard.size_hint for shard in run.pending)
        self.worker = ShardWorker(config, run.models, source=run.source, pending_images=pending_images,
                                  before_publish=run.lock.check_held)  # fmt: skip

    def map(self, config: RunConfig, tasks: list[ShardTask], progress) -> ShardStats:
        total = ShardStats()
        self.worker.progress = progress
        for task in tasks:
            total.add(self.worker.do(task))
        return total

    def close(self) -> None:
        if self.worker is not None:
            self.worker.close()
