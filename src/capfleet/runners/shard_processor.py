"""One shard end to end: read -> decode -> caption -> rank -> write -> mark done.

Every runner (local threads, Beam workers) calls `ShardProcessor.process`, so a shard gives
the same rows wherever it runs. Reading and decoding run ahead in a thread pool while the
model works on the current batch; memory stays bounded by the in-flight window.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from dataclasses import dataclass, field

from capfleet.config import ConfigError, RunConfig
from capfleet.decoding import DecodingOptions
from capfleet.formats import shard_writer_factory
from capfleet.io.location import Location
from capfleet.models.sampling import image_seed
from capfleet.parallel import ordered_map
from capfleet.protocols import Source
from capfleet.ranking import best_candidate
from capfleet.runners.candidates import CandidateMaker, CandidateSettings, Captioned
from capfleet.runners.dedup import load_verdicts
from capfleet.runners.model_processes import Helper, HelperLost, ModelProcesses, job
from capfleet.runners.state import RunState
from capfleet.sample import Sample
from capfleet.sources.plan import ShardSpec
from capfleet.sources.units import fetched
from capfleet.stages.decode import MAX_ASPECT_RATIO, decode_sample
from capfleet.stages.filters import FilterChain
from capfleet.tuning import DEFAULT_BATCH_SIZE, MIN_IMAGES_TO_TUNE, choose_batch_size

log = logging.getLogger("capfleet")
STARVED_FRACTION = 0.10
CHECK_ONLY_SIDE = 8


@dataclass
class ShardStats:
    seen: int = 0
    captioned: int = 0
    failed: int = 0
    filtered: int = 0
    seconds: float = 0.0
    waited: float = 0.0  # seconds the model waited for decoded images
    hygiene: Counter = field(default_factory=Counter)  # degenerate candidates by kind, re-sampled/flagged images

    def add(self, other: ShardStats) -> None:
        self.seen += other.seen
        self.captioned += other.captioned
        self.failed += other.failed
        self.filtered += other.filtered
        self.seconds += other.seconds
        self.waited += other.waited
        self.hygiene.update(other.hygiene)

    def to_json(self) -> dict:
        return {
            "seen": self.seen,
            "captioned": self.captioned,
            "failed": self.failed,
            "filtered": self.filtered,
            "seconds": round(self.seconds, 3),
            "waited_seconds": round(self.waited, 3),
            "hygiene": dict(sorted(self.hygiene.items())),
        }

    @classmethod
    def from_json(cls, row: dict) -> ShardStats:
        """The inverse of `to_json` (a marker, or a GPU worker's report)."""
        counts = {name: row.get(name, 0) for name in ("seen", "captioned", "failed", "filtered")}
        return cls(**counts, seconds=row.get("seconds", 0.0), waited=row.get("waited_seconds", 0.0),
                   hygiene=Counter(row.get("hygiene", {})))  # fmt: skip


def _is_jpeg(sample: Sample) -> bool:
    return sample.error is not None or (sample.data or b"")[:2] == b"\xff\xd8"


def _batches(samples: Iterator[Sample], size: int, on_skip: Callable[[Sample], None]) -> Iterator[list[Sample]]:
    batch: list[Sample] = []
    for sample in samples:
        if sample.error is not None or sample.filtered is not None:
            on_skip(sample)
            continue
        batch.append(sample)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


@dataclass
class _InFlight:
    """A batch on its way to rows: captioned already (`records`), or by `helper`."""

    batch: list[Sample]
    records: list[dict | None] | None = None
    helper: Helper | None = None

    def ready(self) -> bool:
        return self.helper is None or self.helper.has_result()

    def discard(self) -> None:
        """Wait out a helper's job whose rows will not be written (the shard is retried)."""
        if self.helper is not None:
            try:
                self.helper.result(written=False)
            except Exception:
                pass  # lost or failed: either way the helper holds no job now


class ShardProcessor:
    """Holds the loaded models and a worker pool; processes shards one at a time."""

    def __init__(
        self,
        config: RunConfig,
        source: Source,
        captioner,
        scorer,
        executor: Executor,
        progress=None,
        pending_images=None,
        before_publish: Callable[[], None] | None = None,
        helpers: ModelProcesses | None = None,
    ):
        """`pending_images`: how much work lies ahead, for `--batch-size auto` (None: unknown, a Beam worker).
        `before_publish` raises when the run may no longer write (its lease on an object store was lost).
        `helpers`: processes with their own models that caption batches beside this one (`--model-processes`)."""
        self.config = config
        self.before_publish = before_publish or (lambda: None)
        self.source = source
        self.captioner = captioner
        self.scorer = scorer
        self.executor = executor
        self.progress = progress
        self.helpers = helpers if captioner is not None else None
        self.pending_images = pending_images
        self._images_here = 0  # captioned in this process, for the work left (`_consider_helpers`)
        # Batches decoded but not written: one per process, and one more each so none waits for the next.
        self._most_in_flight = 2 * (self.helpers.count + 1) if self.helpers else 1  # helpers started or not
        location = Location(config.output)
        self.state = RunState(location)
        self.open_writer = shard_writer_factory(config, location)
        self._ticks = 0
        self.decoding = DecodingOptions.of_run(config)
        self.batch_size = config.batch_size or self._auto_batch_size(pending_images)
        self.window = max(4 * config.workers, 2 * self.batch_size)
        self.filters = FilterChain(config, lambda shard_name: load_verdicts(location, shard_name))
        # Without a model or filter the pixels are only checked: whole JPEGs and PNGs by their
        # structure (self.pixels), anything else by decoding; JPEGs then at 1/8 scale, which skips
        # most of the inverse DCT.
        model_side = captioner.input_size() if captioner is not None else CHECK_ONLY_SIDE
        self.min_side = max(model_side, self.filters.decode_side)
        self.pixels = captioner is not None or not self.filters.empty
        # With --max-aspect-ratio the size filter records such images; without it decoding refuses them.
        self.max_aspect_ratio = math.inf if config.max_aspect_ratio is not None else MAX_ASPECT_RATIO
        self.captioner_name = captioner.name if captioner is not None else "none"
        self.scorer_name = scorer.name if scorer is not None else "none"
        self.candidates = (
            CandidateMaker(captioner, scorer, CandidateSettings.of_run(config), self.decoding)
            if captioner is not None
            else None
        )

    def _decoded(self, shard: ShardSpec, only: set[str] | None) -> Iterator[Sample]:
        screen = self.filters.for_shard(shard.name)

        def decode(sample: Sample) -> Sample:
            decoded = decode_sample(sample, self.config.max_pixels, self.min_side, self.max_aspect_ratio, self.pixels)
            return screen(decoded)

        read = fetched(self.source.read(shard, only), self.executor, self.window)
        # Without pixels a JPEG is only walked (microseconds): in this thread. Anything else (a PNG's CRC
        # pass, decoding other formats) goes to the decode threads.
        inline = None if self.pixels else _is_jpeg
        return ordered_map(decode, read, self.executor, self.window, inline=inline)

    def process(self, shard: ShardSpec, retry: set[str] | None = None) -> ShardStats:
        """Write the shard atomically, then its errors, then its done-marker (written last).

        `retry` (--retry-errors): only these keys, recorded as errors, are read again; the
        shard is republished with its earlier rows plus theirs, and their old errors dropped.
        """
        started = time.perf_counter()
        self._ticks = 0
        stats = ShardStats()
        errors: list[dict] = []
        filtered: list[dict] = []
        writer = self.open_writer(shard.name)
        writer.refuse_foreign_files()
        if retry is not None:
            writer.keep_published()
        if self.candidates is not None:
            self.candidates.counts = stats.hygiene

        def fail(sample: Sample) -> None:
            errors.append(sample.error_record())
            stats.seen += 1
            stats.failed += 1
            self._tick()

        def skip(sample: Sample) -> None:
            if sample.error is not None:
                fail(sample)
                return
            filtered.append(sample.filtered)
            sample.data = sample.image = None
            stats.seen += 1
            stats.filtered += 1
            self._tick()

        def write(batch: list[Sample], records: list[dict | None]) -> None:
            for sample, record in zip(batch, records, strict=True):
                if sample.error is not None:
                    fail(sample)
                    continue
                writer.write(record, sample)
                if sample.embeddings is not None:
                    writer.add_embeddings(sample.key, *sample.embeddings)
                sample.data = sample.image = sample.embeddings = None
                sample.members = ()
                stats.seen += 1
                stats.captioned += 1
                self._tick()

        in_flight: deque[_InFlight] = deque()  # batches captioned here or by a helper, written in order
        try:
            batches = _batches(self._decoded(shard, retry), self.batch_size, skip)
            for batch in self._timed(batches, stats):
                in_flight.append(self._start(batch))
                while in_flight and (len(in_flight) > self._most_in_flight or in_flight[0].ready()):
                    write(*self._finish(in_flight.popleft(), stats))
            while in_flight:
                write(*self._finish(in_flight.popleft(), stats))
            self.before_publish()
            rows = writer.commit()
        except BaseException as exc:
            writer.abort()
            if isinstance(exc, Exception):  # a retry follows: helpers must not hold this attempt's batches
                for entry in in_flight:
                    entry.discard()
            raise
        self.state.location.write_lines(self.state.errors_file(shard), errors)
        filtered_file = self.state.filtered_file(shard)
        if retry is not None and self.state.location.exists(filtered_file):  # keep the first pass's records
            filtered = self.state.location.read_lines(filtered_file) + filtered
        if filtered or self.state.location.exists(filtered_file):  # a redo replaces an attempt's records
            self.state.location.write_lines(filtered_file, filtered)
        stats.seconds = time.perf_counter() - started
        marker = stats.to_json()
        if retry is not None:  # the marker counts the whole shard
            marker.update(seen=rows + stats.failed, captioned=rows)
        self.before_publish()
        self.state.mark_done(shard, marker)
        self._warn_if_starved(shard, stats)
        return stats

    def _warn_if_starved(self, shard: ShardSpec, stats: ShardStats) -> None:
        """Readers, not the model, limit speed when the model waits more than 10% of the time."""
        if self.captioner is None or stats.seconds <= 0 or stats.waited / stats.seconds <= STARVED_FRACTION:
            return
        log.warning(
            "shard %s: the model waited for images %.0f%% of the time: reading/decoding is the bottleneck "
            "(raise --workers, now %d, or move the data closer)",
            shard.name, 100 * stats.waited / stats.seconds, self.config.workers,
        )  # fmt: skip

    def _auto_batch_size(self, pending_images: int | None) -> int:
        if self.captioner is None:
            return DEFAULT_BATCH_SIZE  # no model call to size: batches only group decoded images
        pending = pending_images if pending_images is not None else MIN_IMAGES_TO_TUNE
        settle = self.helpers.wait_until_ready if self.helpers is not None else None
        size = choose_batch_size(self.captioner, self.scorer, self.config.candidates, self.decoding, pending, settle)
        device = getattr(self.captioner, "device", None)  # a torch device; other engines' captioners have none
        if self.helpers is not None and self.helpers.started and getattr(device, "type", None) == "cuda":
            # The search sized one process's batch on the GPU; every process here runs one at once on it.
            size = max(1, size // (self.helpers.count + 1))
        return size

    def _timed(self, batches: Iterator[list[Sample]], stats: ShardStats) -> Iterator[list[Sample]]:
        """Count the seconds the model waits for decoded images (`stats.waited`)."""
        while True:
            started = time.perf_counter()
            batch = next(batches, None)
            stats.waited += time.perf_counter() - started
            if batch is None:
                return
            yield batch

    def process_with_retries(self, shard: ShardSpec, retry: set[str] | None = None) -> ShardStats:
        """Retry a shard that raised: each attempt starts from nothing, so no row is written twice."""
        failures = 0
        while True:
            try:
                return self.process(shard, retry)
            except ConfigError:
                raise  # the same on every attempt (files in the way): say so once
            except Exception as exc:
                failures += 1
                if failures > self.config.shard_retries:
                    raise
                log.warning("shard %s failed (%s: %s); retrying", shard.name, type(exc).__name__, exc)
                if self.progress is not None:
                    self.progress.update(-self._ticks)  # the redo counts its images again

    def _tick(self) -> None:
        self._ticks += 1
        if self.progress is not None:
            self.progress.update(1)

    def _start(self, batch: list[Sample]) -> _InFlight:
        """Hand the batch to an idle helper, or caption it here now."""
        helper = self.helpers.idle_helper() if self.helpers is not None else None
        if helper is not None:
            seeds = [image_seed(self.config.seed, sample.key) for sample in batch]
            try:
                helper.submit(job(batch, seeds, self.candidates))
                return _InFlight(batch, helper=helper)
            except HelperLost:
                pass  # dropped, with a warning: caption it here
        started = time.perf_counter()
        records = self._caption(batch)
        first = self._images_here == 0  # it pays the warm-up (kernels set up): its pace overstates the work left
        self._images_here += len(batch)
        if not first:
            self._consider_helpers((time.perf_counter() - started) / len(batch))
        return _InFlight(batch, records=records)

    def _consider_helpers(self, seconds_per_image: float) -> None:
        """Start auto helpers once the captioning left, at this process's pace, is worth their start."""
        if self.helpers is None or self.helpers.tried:
            return
        left = None if self.pending_images is None else max(0, self.pending_images - self._images_here)
        if left is None or self.helpers.worth_starting(seconds_per_image * left):
            self.helpers.start()
            if self.helpers.started:  # none, when the system refused them: this process keeps its threads
                self.helpers.share_threads()

    def _finish(self, entry: _InFlight, stats: ShardStats) -> tuple[list[Sample], list[dict | None]]:
        """The batch and its rows; a helper that died or failed on it leaves the batch to this process."""
        if entry.helper is None:
            return entry.batch, entry.records
        try:
            results, counts = entry.helper.result()
        except Exception:  # lost (warned) or the batch raised there: here it gets the image-by-image fallback
            return entry.batch, self._caption(entry.batch)
        stats.hygiene.update(counts)
        return entry.batch, self._rows(entry.batch, results)

    def _caption(self, batch: list[Sample]) -> list[dict | None]:
        """Rows for a batch; a sample whose captioning fails gets `error` set and no row.

        A batch that raises (a CUDA OOM, one image a processor rejects) is retried image by
        image, so one bad image costs one error record, not the whole batch.
        """
        if self.candidates is None:
            return [self._row(sample, Captioned()) for sample in batch]
        try:
            seeds = [image_seed(self.config.seed, sample.key) for sample in batch]
            results = self.candidates.make(batch, seeds)
        except Exception as exc:
            if len(batch) > 1:
                return [row for sample in batch for row in self._caption([sample])]
            batch[0].error = f"caption failed: {type(exc).__name__}: {exc}"
            return [None]
        return self._rows(batch, results)

    def _rows(self, batch: list[Sample], results: list[Captioned]) -> list[dict | None]:
        rows: list[dict | None] = []
        for sample, result in zip(batch, results, strict=True):
            sample.error = result.error
            sample.embeddings = result.embeddings
            rows.append(None if result.error else self._row(sample, result))
        return rows

    def _row(self, sample: Sample, result: Captioned) -> dict:
        """The output row. No nulls: the imagefolder loader cannot type a column null in a whole shard."""
        texts, scores = result.candidates, result.scores
        best = best_candidate(scores)
        return {
            "key": sample.key,
            "source": sample.item.source,
            "text": texts[best] if texts else (sample.item.original_text or ""),
            "candidates": texts,
            "scores": scores,
            "original_text": sample.item.original_text or "",
            "captioner": self.captioner_name,
            "scorer": self.scorer_name,
            # A string, not a list: a shard whose rows all had [] would be typed list<null> by the
            # imagefolder loader, which then cannot read a later shard's flags.
            "flags": ",".join(result.flags),
            "chunked": result.chunked,
            **sample.fields,
        }
