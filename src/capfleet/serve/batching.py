"""Dynamic batching: concurrent requests are gathered into one model call on one worker thread.

The event loop only enqueues a job and awaits its future; the model runs in a single thread that
owns it (models are not thread-safe and one batched call beats several small ones). A job waits at
most `max_wait_ms` after it arrived for others with the same options to join it; a job with a seed
runs alone, so that its captions depend only on its own images and seed.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from capfleet.api import CaptionModel


class QueueFull(RuntimeError):
    """More images are waiting than --max-queue allows; the client should retry later."""


@dataclass
class BatchTimings:
    queue_ms: float
    model_ms: float
    batch_images: int

    def to_json(self) -> dict:
        return {
            "queue_ms": round(self.queue_ms, 2),
            "model_ms": round(self.model_ms, 2),
            "batch_images": self.batch_images,
        }


@dataclass(eq=False)  # jobs are compared by identity, never by their images
class _Job:
    kind: str
    items: list
    options: dict[str, Any]
    group: tuple
    batchable: bool
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future
    enqueued: float = field(default_factory=time.monotonic)


def _deliver(future: asyncio.Future, result: Any = None, error: BaseException | None = None) -> None:
    if future.done():  # the request timed out or its client went away
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class BatchWorker:
    """Owns the model: `await submit(...)` from the event loop, results come back per job in order."""

    def __init__(self, model: CaptionModel, max_batch: int = 8, max_wait_ms: float = 10.0, max_queue: int = 256):
        self.model = model
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self.max_queue = max_queue
        self._jobs: deque[_Job] = deque()
        self._waiting_items = 0
        self._cond = threading.Condition()
        self._running = False
        self._thread: threading.Thread | None = None
        self._calls: dict[str, Callable[[list, dict], list]] = {
            "caption": lambda items, options: model.caption(items, **options),
            "embed_images": lambda items, options: list(model.embed_images(items)),
            "embed_texts": lambda items, options: list(model.embed_texts(items)),
        }

    @property
    def depth(self) -> int:
        """Images (or texts) waiting for the model."""
        return self._waiting_items

    def start(self) -> None:
        self._running = True
        self._thread = threading.Thread(target=self._loop, name="capfleet-model", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._running = False
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=30)

    async def submit(self, kind: str, items: list, options: dict[str, Any] | None = None) -> tuple[list, BatchTimings]:
        """Queue one request's items; returns their outputs in order and how the batch went."""
        options = options or {}
        batchable = options.get("seed") is None
        group = (kind, tuple(sorted(options.items())))
        loop = asyncio.get_running_loop()
        job = _Job(kind, items, options, group, batchable, loop, loop.create_future())
        with self._cond:
            if self._waiting_items + len(items) > self.max_queue:
                raise QueueFull(f"the model queue is full ({self._waiting_items} waiting)")
            self._jobs.append(job)
            self._waiting_items += len(items)
            self._cond.notify()
        try:
            return await job.future
        except asyncio.CancelledError:  # timed out or the client left: free its place in the queue
            self._withdraw(job)
            raise

    def _withdraw(self, job: _Job) -> None:
        with self._cond:
            if job in self._jobs:
                self._jobs.remove(job)
                self._waiting_items -= len(job.items)

    def _take(self) -> list[_Job] | None:
        """The next batch: the oldest job plus later ones with the same options, up to max_batch items."""
        with self._cond:
            while self._running and not self._jobs:
                self._cond.wait()
            if not self._running:
                return None
            first = self._jobs[0]
            deadline = first.enqueued + self.max_wait
            while first.batchable and self._running:
                gathered = sum(len(job.items) for job in self._jobs if job.group == first.group and job.batchable)
                remaining = deadline - time.monotonic()
                if gathered >= self.max_batch or remaining <= 0:
                    break
                self._cond.wait(remaining)
            batch, size = [first], len(first.items)
            if first.batchable:
                for job in list(self._jobs)[1:]:
                    if job.group == first.group and job.batchable:
                        if size + len(job.items) > self.max_batch:
                            break
                        batch.append(job)
                        size += len(job.items)
            for job in batch:
                self._jobs.remove(job)
            self._waiting_items -= size
            return batch

    def _loop(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            live = [job for job in batch if not job.future.done()]
            if live:
                self._run(live)

    def _run(self, batch: list[_Job]) -> None:
        """One model call for the batch; if it raises, each job is retried alone so one bad job fails alone."""
        started = time.monotonic()
        items = [item for job in batch for item in job.items]
        try:
            outputs = self._calls[batch[0].kind](items, batch[0].options)
        except Exception as exc:
            if len(batch) > 1:
                for job in batch:
                    self._run([job])
                return
            batch[0].loop.call_soon_threadsafe(_deliver, batch[0].future, None, exc)
            return
        model_ms = (time.monotonic() - started) * 1000
        start = 0
        for job in batch:
            timings = BatchTimings((started - job.enqueued) * 1000, model_ms, len(items))
            result = (outputs[start : start + len(job.items)], timings)
            start += len(job.items)
            job.loop.call_soon_threadsafe(_deliver, job.future, result)
