"""What a source's `read` yields, and the one place those units become samples.

A unit is a `Sample` whose bytes the source already holds (a tar member, a table cell) or a
zero-argument callable that fetches one (a file, a URL) and turns any failure into the sample's
error record. The reader, not the source, owns the thread pool: `fetched` runs the callables in
it, at most `window` ahead, in order; held samples pass through in the calling thread.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor

from capfleet.parallel import ordered_map
from capfleet.sample import Sample

Unit = Sample | Callable[[], Sample]


def _is_held(unit: Unit) -> bool:
    return isinstance(unit, Sample)


def _load(unit: Unit) -> Sample:
    return unit if isinstance(unit, Sample) else unit()


def fetched(units: Iterable[Unit], executor: Executor, window: int) -> Iterator[Sample]:
    """The units' samples in order, fetches running in `executor` with at most `window` in flight."""
    return ordered_map(_load, units, executor, window, inline=_is_held)
