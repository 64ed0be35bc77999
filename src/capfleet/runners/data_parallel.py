"""`--gpus N`: one engine per GPU, the run's shard tasks divided among them.

Each worker is a fresh process that sees one GPU (CUDA_VISIBLE_DEVICES; with
`--tensor-parallel-size T`, its own group of T GPUs) and holds one ShardWorker, which loads
its own models, so every shard is still published whole and marked done last by exactly one
worker. Dedup's hash phase and `--retry-errors` tasks go the same way. The parent holds the
run's lock, shows progress and sums the stats; a worker that dies leaves its unfinished shards
unmarked, and rerunning the command redoes just those.
"""

from __future__ import annotations

import multiprocessing
import os
import queue as queue_module
from dataclasses import asdict
from typing import TYPE_CHECKING

from capfleet import plugins
from capfleet.config import RunConfig
from capfleet.runners.base import RunnerError, ShardTask

if TYPE_CHECKING:
    from capfleet.runners.shard_processor import ShardStats

_TICK, _SHARD, _FAILED, _FINISHED = "tick", "shard", "failed", "finished"


class GpuWorkerError(RunnerError):
    """A worker process failed; its finished shards are kept and a rerun resumes the rest."""


class _QueueProgress:
    """Progress ticks of a worker, sent to the parent's bar."""

    def __init__(self, messages):
        self.messages = messages

    def update(self, count: int = 1) -> None:
        self.messages.put((_TICK, count))


def visible_devices(worker: int, span: int) -> str:
    """The GPUs worker `worker` sees: its own group of `span` consecutive GPUs (its engine's `gpus_per_worker`)."""
    first = worker * span
    return ",".join(str(gpu) for gpu in range(first, first + span))


def _worker(gpu: int, span: int, settings: dict, tasks: list[ShardTask], messages) -> None:
    # Before anything touches CUDA in this process.
    os.environ["CUDA_VISIBLE_DEVICES"] = visible_devices(gpu, span)
    from capfleet.runners.base import ShardWorker

    worker = ShardWorker(RunConfig(**settings), progress=_QueueProgress(messages))
    try:
        for task in tasks:
            messages.put((_SHARD, worker.do(task).to_json()))
    except BaseException as exc:
        messages.put((_FAILED, f"GPU worker {gpu}: {type(exc).__name__}: {exc}"))
        raise
    finally:
        worker.close()
    messages.put((_FINISHED, gpu))


def _stats(row: dict) -> ShardStats:
    from capfleet.runners.shard_processor import ShardStats

    return ShardStats.from_json(row)


class GpusRunner:
    """`--gpus N` as a runner: the run's tasks divided among N worker processes."""

    name = "gpus"
    loads_models = False  # each worker loads its own engine; the parent keeps no GPU memory

    def __init__(self, config: RunConfig):
        pass  # nothing to connect to: the workers start in `map`, with the settings it is given

    def prepare(self, config: RunConfig, run) -> None:
        pass

    def map(self, config: RunConfig, tasks: list[ShardTask], progress) -> ShardStats:
        return run_on_gpus(config, tasks, progress)

    def close(self) -> None:
        pass


def run_on_gpus(config: RunConfig, tasks: list[ShardTask], progress) -> ShardStats:
    """Do `tasks` on `config.gpus` worker processes; raises if any worker failed."""
    from capfleet.runners.shard_processor import ShardStats

    context = multiprocessing.get_context("spawn")  # CUDA cannot be forked
    messages = context.Queue()
    settings = {**asdict(config), "gpus": 1, "progress": False}
    shares = [tasks[gpu :: config.gpus] for gpu in range(config.gpus)]
    span = plugins.find("engine", config.engine).gpus_per_worker(config)  # GPUs one worker's engine spans
    workers = [
        context.Process(target=_worker, args=(gpu, span, settings, share, messages), daemon=True)
        for gpu, share in enumerate(shares)
        if share
    ]
    for worker in workers:
        worker.start()
    total, running, failures = ShardStats(), len(workers), []
    try:
        while running:
            try:
                kind, value = messages.get(timeout=5)
            except queue_module.Empty:
                if not any(worker.is_alive() for worker in workers):
                    failures.append("a GPU worker died without a word (killed, or out of memory)")
                    break
                continue
            if kind == _TICK:
                progress.update(value)
            elif kind == _SHARD:
                total.add(_stats(value))
            else:
                running -= 1
                if kind == _FAILED:
                    failures.append(value)
    finally:
        for worker in workers:
            worker.join(timeout=5 if not failures else 0.1)
            if worker.is_alive():
                worker.terminate()
    if failures:
        raise GpuWorkerError(f"{failures[0]}; finished shards are kept: rerun the same command to resume")
    return total
