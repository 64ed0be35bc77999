"""The same shard processor as a Beam DoFn: Direct runner here; Dataflow, Flink or Spark at scale.

The launcher plans shards exactly as the local runner does (and records the manifest), then
Beam fans the pending shards out. Workers load the models once per process (`Shared`), process
whole shards and publish them atomically; a retried or speculatively duplicated shard rewrites
the same folder, so a Beam run and a local run give the same set of rows.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict

from capfleet.config import ConfigError, RunConfig
from capfleet.runners.local import RunSummary, load_models, prepare_run
from capfleet.runners.shard_processor import ShardProcessor
from capfleet.sample import Item
from capfleet.sources import open_source
from capfleet.sources.plan import ShardSpec

log = logging.getLogger("capfleet")
NAMESPACE = "capfleet"
# Beam's DirectRunner first tries Prism, a separate binary it downloads on first use. The
# FnApiRunner is the same in-process engine without that step, and honours
# --direct_num_workers / --direct_running_mode.
_OFFLINE_DIRECT = "FnApiRunner"


def _beam():
    try:
        import apache_beam
    except ImportError:
        raise ConfigError("--runner beam needs Apache Beam: pip install 'capfleet[beam]'") from None
    return apache_beam


def shard_to_element(shard: ShardSpec) -> dict:
    return {"shard_id": shard.shard_id, "items": [item.to_json() for item in shard.items]}


def element_to_shard(element: dict) -> ShardSpec:
    return ShardSpec(element["shard_id"], tuple(Item.from_json(row) for row in element["items"]))


class _Models:
    """A weak-referenceable holder, as `beam.utils.shared.Shared` requires."""

    def __init__(self, config: RunConfig):
        self.captioner, self.scorer = load_models(config)


def make_caption_shard_fn(config: RunConfig):
    """Build the DoFn class lazily so that importing capfleet never needs Beam."""
    beam = _beam()
    from apache_beam.metrics import Metrics
    from apache_beam.utils.shared import Shared

    class CaptionShardFn(beam.DoFn):
        def __init__(self, settings: dict):
            self.settings = settings
            self.shared = Shared()

        def setup(self):
            self.config = RunConfig(**self.settings)
            models = self.shared.acquire(lambda: _Models(self.config), tag=self.config.fingerprint())
            self.executor = ThreadPoolExecutor(self.config.workers, thread_name_prefix="capfleet-io")
            self.processor = ShardProcessor(
                self.config, open_source(self.config.inputs), models.captioner, models.scorer, self.executor
            )
            self.counters = {
                name: Metrics.counter(NAMESPACE, name)
                for name in ("images_seen", "images_captioned", "images_failed", "images_skipped", "shards_done")
            }

        def process(self, element):
            shard = element_to_shard(element)
            if self.processor.state.is_done(shard):  # finished by an earlier attempt or a duplicate
                self.counters["images_skipped"].inc(len(shard.items))
                return
            stats = self.processor.process_with_retries(shard)
            self.counters["images_seen"].inc(stats.seen)
            self.counters["images_captioned"].inc(stats.captioned)
            self.counters["images_failed"].inc(stats.failed)
            self.counters["shards_done"].inc()
            log.info("shard %s: %d captioned, %d failed", shard.name, stats.captioned, stats.failed)
            yield {"shard_id": shard.shard_id, **stats.to_json()}

        def teardown(self):
            self.executor.shutdown(wait=True)

    return CaptionShardFn(asdict(config))


def pipeline_options(beam_args: list[str], beam_runner: str):
    from apache_beam.options.pipeline_options import PipelineOptions

    runner = _OFFLINE_DIRECT if beam_runner in ("DirectRunner", "direct") else beam_runner
    return PipelineOptions([f"--runner={runner}", *beam_args])


def run_beam(config: RunConfig, beam_args: list[str] | None = None, beam_runner: str = "DirectRunner") -> RunSummary:
    """Plan on the launcher, process pending shards on Beam workers, summarise from metrics."""
    beam = _beam()
    if beam_runner == "DataflowRunner" and "://" not in config.output:
        raise ConfigError("DataflowRunner workers cannot write to a local folder: use -o gs://bucket/path")
    started = time.perf_counter()
    try:  # a misspelt runner fails here, before the output folder is touched
        pipeline = beam.Pipeline(options=pipeline_options(beam_args or [], beam_runner))
    except ValueError as exc:
        raise ConfigError(f"--beam-runner {beam_runner}: {' '.join(str(exc).split())}") from None
    _, shards, pending = prepare_run(config)
    summary = RunSummary.planned(shards, pending)
    if pending:
        # Beam options are the launcher's business; workers see only capfleet's own settings.
        worker_config = RunConfig(**{**asdict(config), "overwrite": False, "progress": False})
        _ = (
            pipeline
            | "PlanShards" >> beam.Create([shard_to_element(shard) for shard in pending], reshuffle=False)
            | "FanOut" >> beam.Reshuffle()
            | "CaptionShard" >> beam.ParDo(make_caption_shard_fn(worker_config))
        )
        result = pipeline.run()
        result.wait_until_finish()
        _fill_from_metrics(summary, result)
    summary.wall_seconds = time.perf_counter() - started
    return summary


def _fill_from_metrics(summary: RunSummary, result) -> None:
    from apache_beam.metrics.metric import MetricsFilter

    totals: dict[str, int] = {}
    for counter in result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]:
        value = counter.committed if counter.committed is not None else counter.attempted  # some runners
        totals[counter.key.metric.name] = totals.get(counter.key.metric.name, 0) + int(value or 0)
    summary.stats.seen = totals.get("images_seen", 0)
    summary.stats.captioned = totals.get("images_captioned", 0)
    summary.stats.failed = totals.get("images_failed", 0)
    summary.skipped += totals.get("images_skipped", 0)
