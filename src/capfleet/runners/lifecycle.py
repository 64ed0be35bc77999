"""The one owner of a caption run, whatever runs its shards.

Checks (settings, inputs, models, output), OUT's lock (or a task's), the listing and the plan,
then the phases: dedup's hash pass and resolve, captioning the pending shards, `--retry-errors`,
and the summary. A runner (`runners/base.py`) only maps shard tasks over its workers.
"""

from __future__ import annotations

import importlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from operator import attrgetter

from capfleet.config import ConfigError, RunConfig
from capfleet.io.location import Location
from capfleet.io.paths import local_path
from capfleet.models.prompts import check_prompt_fields
from capfleet.protocols import Source
from capfleet.runners import dedup
from capfleet.runners.base import CAPTION, HASH, Runner, ShardTask
from capfleet.runners.candidates import FLAGGED, RESAMPLED
from capfleet.runners.lock import LEASE_FILE, RunLock
from capfleet.runners.model_processes import ModelProcesses
from capfleet.runners.models import check_model_names, load_models
from capfleet.runners.progress import Progress
from capfleet.runners.shard_processor import ShardStats
from capfleet.runners.state import RunState
from capfleet.runners.task_array import Task, task_leases
from capfleet.sample import Item
from capfleet.sources import open_source
from capfleet.sources.plan import ShardSpec
from capfleet.stages.filters import check_filters, needs_prepass
from capfleet.stages.hygiene import DEGENERATE_KINDS, OPENER

log = logging.getLogger("capfleet")


@dataclass
class RunSummary:
    shards: int = 0
    shards_done_before: int = 0
    skipped: int = 0
    stats: ShardStats = field(default_factory=ShardStats)
    wall_seconds: float = 0.0
    task: Task | None = None
    all_shards: int = 0  # a task's summary: the shards of every task together

    @classmethod
    def planned(cls, shards: list[ShardSpec], pending: list[ShardSpec], task: Task | None = None) -> RunSummary:
        """What a run (or one task of an array) starts from: its shards, and what earlier runs finished."""
        everyone = len(shards)
        if task is not None:
            shards = [shard for shard in shards if task.owns(shard.name)]
        skipped = sum(s.size_hint for s in shards) - sum(s.size_hint for s in pending)
        done = len(shards) - len(pending)
        return cls(shards=len(shards), shards_done_before=done, skipped=skipped, task=task, all_shards=everyone)

    @property
    def images_per_second(self) -> float:
        return self.stats.seen / self.wall_seconds if self.wall_seconds > 0 else 0.0

    def lines(self) -> list[str]:
        whose = f" of {self.all_shards}, {self.task}'s share" if self.task is not None else ""
        return [
            f"shards: {self.shards}{whose} ({self.shards_done_before} already done)",
            f"seen: {self.stats.seen}  captioned: {self.stats.captioned}  failed: {self.stats.failed}  "
            + (f"filtered: {self.stats.filtered}  " if self.stats.filtered else "")
            + f"skipped (already done): {self.skipped}",
            f"time: {self.wall_seconds:.1f} s  ({self.images_per_second:.2f} images/s)",
            *self.hygiene_lines(),
        ]

    def hygiene_lines(self) -> list[str]:
        """Degenerate candidates by kind, and what became of images with nothing usable."""
        counts = self.stats.hygiene
        if not counts:
            return []
        kinds = ", ".join(f"{kind} {counts[kind]}" for kind in (*DEGENERATE_KINDS, OPENER) if counts[kind])
        return [
            f"hygiene: dropped candidates: {kinds or 'none'}; images re-sampled: {counts[RESAMPLED]}, "
            f"kept with flags: {counts[FLAGGED]}"
        ]


def check_output_is_not_an_input(config: RunConfig) -> None:
    """An output equal to an input, or holding one, would caption (and --overwrite) the user's files.

    An output inside an input folder is allowed: listing skips folders that hold a capfleet run.
    """
    output = local_path(config.output)
    if output is None:
        return
    output = os.path.realpath(output)  # a symlinked output is the folder it points to
    for spec in config.inputs:
        source = local_path(spec)
        source = os.path.realpath(source) if source is not None else None
        if source is not None and (source == output or source.startswith(output.rstrip("/") + "/")):
            raise ConfigError(f"output {config.output} is also an input ({spec}): write to another folder")


@dataclass
class StartedRun:
    state: RunState
    source: Source
    shards: list[ShardSpec]
    pending: list[ShardSpec]
    retries: list[ShardSpec]  # --retry-errors: finished shards whose failed images are read again
    models: tuple | None
    lock: RunLock
    task: Task | None = None  # a task array's task: pending and retries hold only its own shards
    model_processes: ModelProcesses | None = None  # helpers the caller keeps across runs (`run_caption`)
    models_given: bool = False  # the caller's models, not loaded from the settings: helpers could not load the same


@contextmanager
def start_run(
    config: RunConfig, load: Callable[[], tuple] | None = None, models_given: bool = False
) -> Iterator[StartedRun]:
    """Check everything, then take OUT's lock and record the run; the lock is held until exit.

    Nothing is written before the settings, the inputs and the models (`load`, when this run
    has work) have been checked, so a failed start leaves OUT_DIR as it was and the retry with
    corrected settings is not refused as "other settings".
    """
    config.validate()
    if not models_given:  # models handed in (the API, tests) were loaded already: no names to check
        check_model_names(config)
    check_output_is_not_an_input(config)
    check_filters(config)
    state = RunState(Location(config.output))
    source = open_source(config.inputs, config)
    resuming = state.check(config)
    listing = None if resuming else list(source.listing())
    if listing is not None:
        check_prompt_fields(config.prompt, _first_item(listing))
    task = Task(config.task_index, config.task_count) if config.task_count is not None else None
    has_work = True if not resuming else any(_work(state, config, source, task)[1:])  # pending or retried shards
    models = load() if load is not None and has_work else None  # a finished run loads no models
    with _lock(state.location, task) as lock:
        if state.prepare(config, task):  # again under the lock: another run may have started meanwhile
            log.info("resuming the run in %s", config.output)
        else:
            if listing is None:  # the folder changed between the check and the lock: list now
                listing = list(source.listing())
                check_prompt_fields(config.prompt, _first_item(listing))
            state.record_run(config, listing)
        shards, pending, retries = _work(state, config, source, task)
        if (pending or retries) and models is None and load is not None:
            models = load()
        yield StartedRun(state, source, shards, pending, retries, models, lock, task, models_given=models_given)


def _lock(location: Location, task: Task | None) -> RunLock:
    """A plain run owns OUT alone; a task owns its share, beside the other tasks, never beside a plain run."""
    if task is None:
        return RunLock(location, rivals=lambda: task_leases(location))
    own = {"lock_file": task.lock_file, "lease_file": task.lease_file}
    return RunLock(location, **own, shared_run_lock=True, rivals=lambda: [LEASE_FILE])


def _first_item(listing: list[dict]) -> Item | None:
    """The first image of a listing, for checking prompt fields (tars and tables list files, not images)."""
    return Item.from_json(listing[0]) if listing and "source" in listing[0] and "key" in listing[0] else None


def _work(
    state: RunState, config: RunConfig, source, task: Task | None = None
) -> tuple[list[ShardSpec], list[ShardSpec], list[ShardSpec]]:
    """All shards, those still to do, and (--retry-errors) finished ones with error records;
    for a task of an array, the last two hold only the shards it owns."""
    shards = state.plan(config, source)
    done = state.done_counts()
    own = shards if task is None else [shard for shard in shards if task.owns(shard.name)]
    pending = [shard for shard in own if shard.name not in done or done[shard.name] != shard.planned]
    return shards, pending, shards_to_retry(config, state, own, pending)


def shards_to_retry(config: RunConfig, state: RunState, shards: list[ShardSpec], pending: list[ShardSpec]):
    """--retry-errors: finished shards that recorded errors (pending shards are redone anyway)."""
    if not config.retry_errors:
        return []
    failed = state.shards_with_errors() - {shard.name for shard in pending}
    return [shard for shard in shards if shard.name in failed]


# The runners `run_caption` maps shard tasks on, each imported only when chosen ("module:factory",
# the factory called with the settings). A fifth runner is one module and one line here.
RUNNERS = {
    "local": "capfleet.runners.local:LocalRunner",
    "gpus": "capfleet.runners.data_parallel:GpusRunner",
    "ray": "capfleet.runners.ray:RayRunner.connect",
}


def pick_runner(config: RunConfig) -> Runner:
    """The runner the settings ask for (`--gpus N` picks "gpus"); its extra is checked here, before
    anything is listed."""
    module, factory = RUNNERS["gpus" if config.gpus > 1 else config.runner].split(":")
    return attrgetter(factory)(importlib.import_module(module))(config)


def run_caption(
    config: RunConfig, models: tuple | None = None, model_processes: ModelProcesses | None = None
) -> RunSummary:
    """Caption a run to the end (or this task's share of it) on the runner the settings pick.

    `models`: (captioner, scorer) loaded already; `model_processes`: helpers started already, kept
    for the next run (by default a local CPU run starts its own, `--model-processes`, and closes them)."""
    started = time.perf_counter()
    runner = pick_runner(config.validate())  # settings first: a runner may join a cluster
    try:
        load = None
        if runner.loads_models:  # workers elsewhere load their own; the launcher keeps no GPU memory
            load = (lambda: models) if models is not None else (lambda: load_models(config))
        with start_run(config, load, models_given=models is not None) as run:
            run.model_processes = model_processes
            summary = RunSummary.planned(run.shards, run.pending, run.task)
            runner.prepare(config, run)
            if run.pending and needs_prepass(config):
                hash_all(config, runner, run.shards)
            tasks = [ShardTask(CAPTION, shard) for shard in run.pending]
            tasks += [ShardTask(CAPTION, shard, frozenset(run.state.failed_keys(shard))) for shard in run.retries]
            if tasks:
                progress = Progress(sum(s.size_hint for s in run.pending), config.progress)
                try:
                    summary.stats.add(runner.map(config, tasks, progress))
                finally:
                    progress.close()
    finally:
        runner.close()
    summary.wall_seconds = time.perf_counter() - started
    return summary


def hash_all(config: RunConfig, runner: Runner, shards: list[ShardSpec]) -> None:
    """Dedup's first phase on the runner's workers: hash the shards not hashed yet; then resolve them all."""
    todo = dedup.unhashed(Location(config.output), shards)
    if todo:
        progress = Progress(sum(s.size_hint for s in todo), config.progress, unit="hash")
        try:
            runner.map(config, [ShardTask(HASH, shard) for shard in todo], progress)
        finally:
            progress.close()
    log.info("duplicates: %d found", dedup.resolve(config, shards))
