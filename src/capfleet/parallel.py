"""Ordered, bounded parallel map: overlap I/O and decoding with the model without unbounded memory."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def ordered_map(
    fn: Callable[[T], R],
    items: Iterable[T],
    executor: Executor,
    window: int,
    inline: Callable[[T], bool] | None = None,
) -> Iterator[R]:
    """Like `executor.map`, but keeps at most `window` calls in flight and yields in input order.

    `executor.map` submits everything up front, which for a shard of large images means every
    decoded image in memory at once; here memory stays bounded by the window (img2dataset's
    semaphore idea). `fn` must not raise: per-item failures travel inside its result. Items for
    which `inline` says so are done in the calling thread: for work of microseconds, handing it to
    a thread and back costs more than the work. While nothing is in flight such an item is yielded
    at once, not held: a stream of inline items (samples a tar reader already holds) is not read ahead.
    """

    def start(item: T) -> Future:
        if inline is None or not inline(item):
            return executor.submit(fn, item)
        done: Future = Future()
        done.set_result(fn(item))
        return done

    pending: deque = deque()
    iterator = iter(items)
    for item in iterator:
        if not pending and inline is not None and inline(item):
            yield fn(item)
            continue
        pending.append(start(item))
        if len(pending) >= window:
            break
    while pending:
        result = pending.popleft().result()
        for item in iterator:
            pending.append(start(item))
            break
        yield result
