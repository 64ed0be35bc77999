"""The in-process runner: every shard task in this process, with the models the run loaded
(and, on a CPU, helper processes with their own: `runners/model_processes.py`)."""

from __future__ import annotations

import logging

from capfleet.config import RunConfig
from capfleet.runners.base import ShardTask, ShardWorker
from capfleet.runners.model_processes import ModelProcesses, for_run
from capfleet.runners.shard_processor import ShardStats

log = logging.getLogger("capfleet")


class LocalRunner:
    name = "local"
    loads_models = True

    def __init__(self, config: RunConfig):
        self.worker: ShardWorker | None = None  # built in `prepare`, on the models the run loaded
        self.helpers: ModelProcesses | None = None  # the caller's or, in `own_helpers`, this run's
        self.own_helpers: ModelProcesses | None = None  # started for this run: closed with it

    def prepare(self, config: RunConfig, run) -> None:
        """One worker on the models and source the run opened, guarded by its lock (a lost lease stops it)."""
        pending_images = sum(shard.size_hint for shard in run.pending)
        helpers = self.helpers = run.model_processes
        if helpers is None and run.models is not None and not run.models_given:
            helpers = self.helpers = self.own_helpers = for_run(config, run.models)
        if helpers is not None and helpers.started:
            helpers.share_threads()  # for this run only: `close` takes them back
        self.worker = ShardWorker(config, run.models, source=run.source, pending_images=pending_images,
                                  before_publish=run.lock.check_held, helpers=helpers)  # fmt: skip

    def map(self, config: RunConfig, tasks: list[ShardTask], progress) -> ShardStats:
        total = ShardStats()
        self.worker.progress = progress
        for task in tasks:
            total.add(self.worker.do(task))
        return total

    def close(self) -> None:
        if self.worker is not None:
            self.worker.close()
        if self.own_helpers is not None and self.own_helpers.started:
            log.info("helper processes captioned %d images", self.own_helpers.images)
            self.own_helpers.close()
        if self.helpers is not None:
            self.helpers.take_back_threads()
