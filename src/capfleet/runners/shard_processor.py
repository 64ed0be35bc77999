"""One shard end to end: read -> decode -> caption -> rank -> write -> mark done.

Every runner (local threads, Beam workers) calls `ShardProcessor.process`, so a shard gives
the same rows wherever it runs. Reading and decoding run ahead in a thread pool while the
model works on the current batch; memory stays bounded by the in-flight window.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from dataclasses import dataclass

from capfleet.config import RunConfig
from capfleet.models.captioner import DecodingOptions
from capfleet.parallel import ordered_map
from capfleet.runners.state import RunState
from capfleet.sample import Sample
from capfleet.sinks.imagefolder import ImageFolderSink
from capfleet.sinks.location import Location
from capfleet.sources.plan import ShardSpec
from capfleet.stages.decode import decode_sample

log = logging.getLogger("capfleet")


@dataclass
class ShardStats:
    seen: int = 0
    captioned: int = 0
    failed: int = 0
    seconds: float = 0.0

    def add(self, other: ShardStats) -> None:
        self.seen += other.seen
        self.captioned += other.captioned
        self.failed += other.failed
        self.seconds += other.seconds

    def to_json(self) -> dict:
        return {
            "seen": self.seen,
            "captioned": self.captioned,
            "failed": self.failed,
            "seconds": round(self.seconds, 3),
        }


def batch_seed(seed: int, first_key: str) -> int:
    """A per-batch seed: a redone shard samples exactly what the interrupted one would have."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{first_key}".encode()).digest()[:4], "little")


def _batches(samples: Iterator[Sample], size: int, on_error: Callable[[Sample], None]) -> Iterator[list[Sample]]:
    batch: list[Sample] = []
    for sample in samples:
        if sample.error is not None:
            on_error(sample)
            continue
        batch.append(sample)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class ShardProcessor:
    """Holds the loaded models and a worker pool; processes shards one at a time."""

    def __init__(self, config: RunConfig, source, captioner, scorer, executor: Executor, progress=None):
        self.config = config
        self.source = source
        self.captioner = captioner
        self.scorer = scorer
        self.executor = executor
        self.progress = progress
        location = Location(config.output)
        self.state = RunState(location)
        self.sink = ImageFolderSink(location)
        self.window = max(4 * config.workers, 2 * config.batch_size)
        self._ticks = 0
        self.decoding = DecodingOptions(config.decoding, config.top_p, config.max_new_tokens)
        self.min_side = captioner.input_size() if captioner is not None else 384
        self.captioner_name = captioner.name if captioner is not None else "none"
        self.scorer_name = scorer.name if scorer is not None else "none"

    def _decoded(self, shard: ShardSpec) -> Iterator[Sample]:
        def decode(sample: Sample) -> Sample:
            return decode_sample(sample, self.config.max_pixels, self.min_side)

        fetched = self.source.read(shard, self.executor, self.window)
        return ordered_map(decode, fetched, self.executor, self.window)

    def process(self, shard: ShardSpec) -> ShardStats:
        """Write the shard atomically, then its errors, then its done-marker (written last)."""
        started = time.perf_counter()
        self._ticks = 0
        stats = ShardStats()
        errors: list[dict] = []
        writer = self.sink.open(shard.name)

        def fail(sample: Sample) -> None:
            errors.append(sample.error_record())
            stats.seen += 1
            stats.failed += 1
            self._tick()

        try:
            for batch in _batches(self._decoded(shard), self.config.batch_size, fail):
                for sample, record in zip(batch, self._caption(batch), strict=True):
                    if sample.error is not None:
                        fail(sample)
                        continue
                    writer.write(record, sample.data or b"", sample.extension)
                    if sample.embeddings is not None:
                        writer.add_embeddings(sample.key, *sample.embeddings)
                    sample.data = sample.image = sample.embeddings = None
                    stats.seen += 1
                    stats.captioned += 1
                    self._tick()
            writer.commit()
        except BaseException:
            writer.abort()
            raise
        self.state.location.write_lines(self.state.errors_file(shard), errors)
        stats.seconds = time.perf_counter() - started
        self.state.mark_done(shard, stats.to_json())
        return stats

    def process_with_retries(self, shard: ShardSpec) -> ShardStats:
        """Retry a shard that raised: each attempt starts from nothing, so no row is written twice."""
        failures = 0
        while True:
            try:
                return self.process(shard)
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

    def _caption(self, batch: list[Sample]) -> list[dict | None]:
        """Rows for a batch; a sample whose captioning fails gets `error` set and no row.

        A batch that raises (a CUDA OOM, one image a processor rejects) is retried image by
        image, so one bad image costs one error record, not the whole batch.
        """
        if self.captioner is None:
            return [self._row(sample, [], []) for sample in batch]
        images = [sample.image for sample in batch]
        try:
            seed = batch_seed(self.config.seed, batch[0].key)
            candidates = self.captioner.generate(
                images, self.config.candidates, self.config.prompt, seed, self.decoding
            )
            scores, image_embeddings, text_embeddings = (
                self.scorer.score_and_embed(images, candidates)
                if self.scorer is not None
                else ([[] for _ in batch], None, [])
            )
        except Exception as exc:
            if len(batch) > 1:
                return [row for sample in batch for row in self._caption([sample])]
            batch[0].error = f"caption failed: {type(exc).__name__}: {exc}"
            return [None]
        rows: list[dict | None] = []
        for i, (sample, texts, row_scores) in enumerate(zip(batch, candidates, scores, strict=True)):
            if not texts:
                sample.error = "caption failed: the model produced only empty captions"
                rows.append(None)
                continue
            row = self._row(sample, texts, row_scores)
            if self.config.embeddings and image_embeddings is not None:
                chosen = text_embeddings[i][row["candidates"].index(row["text"])]
                sample.embeddings = (image_embeddings[i].cpu().numpy(), chosen.cpu().numpy())
            rows.append(row)
        return rows

    def _row(self, sample: Sample, texts: list[str], scores: list[float]) -> dict:
        """The output row. No nulls: the imagefolder loader cannot type a column null in a whole shard."""
        best = max(range(len(texts)), key=scores.__getitem__) if scores else 0
        return {
            "key": sample.key,
            "source": sample.item.source,
            "text": texts[best] if texts else (sample.item.original_text or ""),
            "candidates": texts,
            "scores": scores,
            "original_text": sample.item.original_text or "",
            "captioner": self.captioner_name,
            "scorer": self.scorer_name,
        }
