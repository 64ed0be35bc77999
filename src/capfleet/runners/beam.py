"""The same shard processor as a Beam DoFn: Direct runner here; Dataflow, Flink or Spark at scale.

The launcher plans shards exactly as the local runner does (and records the manifest), then
Beam fans the pending shards out. Workers load the models once per process (`Shared`), process
whole shards and publish them atomically; a retried or speculatively duplicated shard rewrites
the same folder, so a Beam run and a local run give the same set of rows.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import asdict

from capfleet.config import ConfigError, RunConfig
from capfleet.errors import require
from capfleet.io.location import Location
from capfleet.protocols import Source
from capfleet.runners import dedup
from capfleet.runners.base import CAPTION, HASH, ShardTask, ShardWorker
from capfleet.runners.beam_checks import check_item_paths, check_paths_for_runner
from capfleet.runners.lifecycle import RunSummary, start_run
from capfleet.runners.models import load_models
from capfleet.sources.plan import ShardSpec
from capfleet.stages.filters import needs_prepass

log = logging.getLogger("capfleet")
NAMESPACE = "capfleet"
HYGIENE_COUNTER = "hygiene_"  # + a hygiene kind: one Beam counter each
# Beam's DirectRunner first tries Prism, a separate binary it downloads on first use. The
# FnApiRunner is the same in-process engine without that step, and honours
# --direct_num_workers / --direct_running_mode.
_OFFLINE_DIRECT = "FnApiRunner"


def _beam():
    require(("apache_beam",), "beam", "--runner beam")
    import apache_beam

    return apache_beam


def shard_to_element(shard: ShardSpec) -> dict:
    """Natural shards travel as (file, row range); listed shards with their items."""
    return shard.to_json()


def element_to_shard(element: dict) -> ShardSpec:
    return ShardSpec.from_json({name: value for name, value in element.items() if name != "retry_errors"})


class _Models:
    """A weak-referenceable holder, as `beam.utils.shared.Shared` requires."""

    def __init__(self, config: RunConfig):
        self.models = load_models(config)


def make_caption_shard_fn(config: RunConfig, pending_images: int | None = None):
    """Build the DoFn class lazily so that importing capfleet never needs Beam."""
    beam = _beam()
    from apache_beam.metrics import Metrics
    from apache_beam.utils.shared import Shared

    class CaptionShardFn(beam.DoFn):
        def __init__(self, settings: dict, pending_images: int | None):
            self.settings = settings
            self.pending_images = pending_images  # of the whole run: sizes --batch-size auto's search
            self.shared = Shared()

        def setup(self):
            config = RunConfig(**self.settings)
            models = self.shared.acquire(lambda: _Models(config), tag=config.fingerprint())
            self.worker = ShardWorker(config, models.models, pending_images=self.pending_images)
            self.counters = {
                name: Metrics.counter(NAMESPACE, name)
                for name in (
                    "images_seen",
                    "images_captioned",
                    "images_failed",
                    "images_filtered",
                    "images_skipped",
                    "shards_done",
                )
            }

        def process(self, element):
            shard = element_to_shard(element)
            state = self.worker.processor.state
            keys = None
            if element.get("retry_errors", False):  # the errors as recorded now: a duplicate attempt finds none
                keys = frozenset(state.failed_keys(shard))
                if not keys:
                    return
            elif state.is_done(shard):  # finished by an earlier attempt or a duplicate
                self.counters["images_skipped"].inc(shard.size_hint)
                return
            stats = self.worker.do(ShardTask(CAPTION, shard, keys))
            self.counters["images_seen"].inc(stats.seen)
            self.counters["images_captioned"].inc(stats.captioned)
            self.counters["images_failed"].inc(stats.failed)
            self.counters["images_filtered"].inc(stats.filtered)
            self.counters["shards_done"].inc()
            for kind, count in stats.hygiene.items():
                Metrics.counter(NAMESPACE, HYGIENE_COUNTER + kind).inc(count)
            log.info("shard %s: %d captioned, %d failed", shard.name, stats.captioned, stats.failed)
            yield {"shard_id": shard.shard_id, **stats.to_json()}

        def teardown(self):
            self.worker.close()

    return CaptionShardFn(asdict(config), pending_images)


def split_beam_options(tokens: list[str]) -> tuple[list[str], list[str]]:
    """(INPUTs, Beam options) from the command line's leftovers, `--opt value` or `--opt=value`.

    Whether `--opt` takes a value is asked of Beam's own option definitions (every
    PipelineOptions class, as `PipelineOptions.get_all_options` builds them), so the value of
    `--direct_num_workers 2` is never taken for an INPUT. Options Beam does not know must use `=`.
    """
    from apache_beam.options.pipeline_options import PipelineOptions, _BeamArgumentParser

    parser = _BeamArgumentParser(allow_abbrev=False)
    for options_class in PipelineOptions.__subclasses__():
        options_class._add_argparse_args(parser)
    actions = parser._option_string_actions
    inputs: list[str] = []
    beam_args: list[str] = []
    remaining = iter(tokens)
    for token in remaining:
        if not token.startswith("-"):
            inputs.append(token)
            continue
        beam_args.append(token)
        action = actions.get(token)
        if "=" not in token and action is not None and action.nargs != 0:
            value = next(remaining, None)
            if value is not None:
                beam_args.append(value)
    return inputs, beam_args


def make_hash_shard_fn(config: RunConfig):
    """The duplicate phase's hashing step as a DoFn (no models: only a reader pool per worker)."""
    beam = _beam()

    class HashShardFn(beam.DoFn):
        def __init__(self, settings: dict):
            self.settings = settings

        def setup(self):
            self.worker = ShardWorker(RunConfig(**self.settings))

        def process(self, element):
            yield self.worker.do(ShardTask(HASH, element_to_shard(element))).seen

        def teardown(self):
            self.worker.close()

    return HashShardFn(asdict(config))


def _run_pipeline(beam, options, elements: list[dict], step: str, fn):
    """One Beam pipeline fanning shard `elements` out to `fn`; returns its finished result."""
    pipeline = beam.Pipeline(options=options)
    _ = (
        pipeline
        | "PlanShards" >> beam.Create(elements, reshuffle=False)
        | "FanOut" >> beam.Reshuffle()
        | step >> beam.ParDo(fn)
    )
    result = pipeline.run()
    result.wait_until_finish()
    return result


def pipeline_options(beam_args: list[str], beam_runner: str):
    from apache_beam.options.pipeline_options import PipelineOptions

    runner = _OFFLINE_DIRECT if beam_runner in ("DirectRunner", "direct") else beam_runner
    return PipelineOptions([f"--runner={runner}", *beam_args])


def worker_placement(options) -> dict:
    """What decides whether workers see the launcher's files: runner, environment, cluster address."""
    from apache_beam.options.pipeline_options import (
        FlinkRunnerOptions,
        PortableOptions,
        SparkRunnerOptions,
        StandardOptions,
    )

    return {
        "runner": options.view_as(StandardOptions).runner,
        "environment_type": options.view_as(PortableOptions).environment_type,
        "flink_master": options.view_as(FlinkRunnerOptions).flink_master,
        "spark_master": options.view_as(SparkRunnerOptions).spark_master_url,
    }


def run_beam(config: RunConfig, beam_args: list[str] | None = None, beam_runner: str = "DirectRunner") -> RunSummary:
    """Plan on the launcher, process pending shards on Beam workers, summarise from metrics."""
    beam = _beam()
    options = pipeline_options(beam_args or [], beam_runner)
    from apache_beam.options.pipeline_options import StandardOptions
    from apache_beam.runners.runner import create_runner

    try:  # a misspelt runner fails here, before the output folder is touched
        create_runner(options.view_as(StandardOptions).runner)
    except ValueError as exc:
        raise ConfigError(f"--beam-runner {beam_runner}: {' '.join(str(exc).split())}") from None
    placement = worker_placement(options)
    check_paths_for_runner(config, **placement)
    if config.gpus > 1:
        raise ConfigError("--gpus is for the local runner: Beam workers each use the GPUs they have")
    started = time.perf_counter()
    with start_run(config) as run:  # the launcher holds OUT's lock while the workers write
        summary = RunSummary.planned(run.shards, run.pending)
        try:  # paths from a file list in a bucket, or from the manifest of an earlier run
            check_item_paths(_opened(run.source, run.pending + run.retries), **placement)
        except ConfigError as exc:
            raise ConfigError(
                f"{exc} (the run's listing in {config.output} names it: rerun with --overwrite)"
            ) from None
        elements = [shard_to_element(shard) for shard in run.pending]
        elements += [{**shard_to_element(shard), "retry_errors": True} for shard in run.retries]
        if elements:
            # Beam options are the launcher's business; workers see only capfleet's own settings.
            worker_config = RunConfig(**{**asdict(config), "overwrite": False, "progress": False})
            if run.pending and needs_prepass(config):  # hash on workers, resolve here (docs/filters.md)
                unhashed = dedup.unhashed(Location(config.output), run.shards)
                if unhashed:
                    hashing = [shard_to_element(shard) for shard in unhashed]
                    _run_pipeline(beam, options, hashing, "HashShard", make_hash_shard_fn(worker_config))
                log.info("duplicates: %d found", dedup.resolve(config, run.shards))
            caption_fn = make_caption_shard_fn(worker_config, pending_image_count(run.pending))
            result = _run_pipeline(beam, options, elements, "CaptionShard", caption_fn)
            _fill_from_metrics(summary, result)
    summary.wall_seconds = time.perf_counter() - started
    return summary


def pending_image_count(pending: list[ShardSpec]) -> int:
    return sum(shard.size_hint for shard in pending)


def _opened(source: Source, shards: list[ShardSpec]) -> Iterator[str]:
    """Every path the workers will open: a natural shard's file, or a listed shard's items."""
    for shard in shards:
        yield from source.opens(shard)


def _fill_from_metrics(summary: RunSummary, result) -> None:
    from apache_beam.metrics.metric import MetricsFilter

    totals: dict[str, int] = {}
    for counter in result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]:
        value = counter.committed if counter.committed is not None else counter.attempted  # some runners
        totals[counter.key.metric.name] = totals.get(counter.key.metric.name, 0) + int(value or 0)
    summary.stats.seen = totals.get("images_seen", 0)
    summary.stats.captioned = totals.get("images_captioned", 0)
    summary.stats.failed = totals.get("images_failed", 0)
    summary.stats.filtered = totals.get("images_filtered", 0)
    summary.skipped += totals.get("images_skipped", 0)
    summary.stats.hygiene.update(
        {name.removeprefix(HYGIENE_COUNTER): n for name, n in totals.items() if name.startswith(HYGIENE_COUNTER)}
    )
