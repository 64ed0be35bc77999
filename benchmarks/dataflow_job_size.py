"""How large a Dataflow job capfleet submits for N pending images, measured without submitting it.

Dataflow refuses a job whose graph exceeds 10 MB, or whose creation request exceeds 20 MB, and
capfleet's Beam elements carry each pending shard's list of images. This runs `run_beam` exactly
as `capfleet caption ... --runner beam --beam-runner DataflowRunner` does, for synthetic pending
shards of `gs://` images with hashed 40-character names, and lets Beam's DataflowRunner build the
job and write the job request (`--dataflow_job_file`). Four calls that would reach Google Cloud
are replaced, so nothing leaves this machine (`--no_auth`): planning (which lists the bucket),
the bucket soft-delete check, staging (files go to a local folder instead of the staging bucket)
and the request that creates the job. Needs apache-beam[gcp]:

    pip install "apache-beam[gcp]==2.77.0"
    python benchmarks/dataflow_job_size.py                       # 10k, 100k and 1M pending images
    python benchmarks/dataflow_job_size.py --images 100000 --keep /tmp/jobs
    python benchmarks/dataflow_job_size.py --images 100000 --prefix gs://bucket/a/much/longer/folder/

`pipeline.pb` is the Beam pipeline that Dataflow builds the job graph from (Runner v2 sends no
steps in the request); `job.json` is the creation request.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import tempfile
import time
from contextlib import contextmanager
from types import SimpleNamespace

import capfleet.runners.beam as beam_runner
from capfleet.config import RunConfig
from capfleet.protocols import Source
from capfleet.sample import Item
from capfleet.sources import FileSource
from capfleet.sources.plan import ShardSpec, plan_row_ranges, plan_shards
from capfleet.sources.table import TableSource

MB = 1_000_000
GRAPH_LIMIT, REQUEST_LIMIT = 10 * MB, 20 * MB


class NotSubmitted(Exception):
    """Raised where DataflowRunner would send the job to the Dataflow service."""


def pending_shards(images: int, shard_size: int, prefix: str, natural: bool = False) -> tuple[Source, list[ShardSpec]]:
    """The source and its shards: listed shards carry their image URLs; natural ones (a parquet row
    range; a tar is alike) carry only where to read."""
    if natural:
        origin = f"{prefix}images.parquet"
        ranges = plan_row_ranges([(origin, images)], shard_size)
        return TableSource([origin]), [rows.shard(n) for n, rows in enumerate(ranges)]
    rows = [
        Item(f"{i:09d}", f"{prefix}{hashlib.sha1(str(i).encode()).hexdigest()}.jpg").to_json() for i in range(images)
    ]
    return FileSource([prefix]), plan_shards(rows, shard_size)


@contextmanager
def _planned(source: Source, shards: list[ShardSpec]):
    """`start_run` as the launcher sees it, without listing a bucket or taking a lease."""
    yield SimpleNamespace(source=source, shards=shards, pending=shards, retries=[])


def job_sizes(images: int, shard_size: int, prefix: str, folder: str, natural: bool) -> tuple[int, int]:
    """(bytes of job.json, bytes of the staged pipeline.pb) for `images` pending images."""
    from apache_beam.options.pipeline_options import GoogleCloudOptions
    from apache_beam.runners.dataflow.internal.apiclient import DataflowApplicationClient

    source, shards = pending_shards(images, shard_size, prefix, natural)
    config = RunConfig(inputs=["gs://my-bucket/photos"], output="gs://my-bucket/captions", shard_size=shard_size)
    args = [
        "--project=my-project",
        "--region=us-central1",
        "--temp_location=gs://my-bucket/dataflow-tmp",
        f"--dataflow_job_file={folder}/job.json",
        "--no_auth",
        "--sdk_container_image=us-central1-docker.pkg.dev/my-project/capfleet/worker:abc1234",
        "--experiments=use_runner_v2",
        "--experiments=no_use_multiple_sdk_containers",
    ]

    def stage_locally(self, location, file_name, stream, mime_type=None, total_size=None):
        with open(os.path.join(folder, file_name), "wb") as handle:
            handle.write(stream.read())

    def not_submitted(self, job):
        raise NotSubmitted

    replaced = [
        (beam_runner, "start_run", lambda config: _planned(source, shards)),
        (GoogleCloudOptions, "_warn_if_soft_delete_policy_enabled", lambda self, arg_name: None),
        (DataflowApplicationClient, "stage_file", stage_locally),
        (DataflowApplicationClient, "submit_job_description", not_submitted),
    ]
    originals = [(owner, name, getattr(owner, name)) for owner, name, _ in replaced]
    for owner, name, value in replaced:
        setattr(owner, name, value)
    try:
        beam_runner.run_beam(config, args, "DataflowRunner")
    except NotSubmitted:
        pass
    finally:
        for owner, name, value in originals:
            setattr(owner, name, value)
    return os.path.getsize(os.path.join(folder, "job.json")), os.path.getsize(os.path.join(folder, "pipeline.pb"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--shard-size", type=int, default=1000)
    parser.add_argument("--prefix", default="gs://my-bucket/photos/", help="what precedes each hashed file name")
    parser.add_argument(
        "--natural", action="store_true", help="shards as row ranges of a parquet file (as tars and tables plan)"
    )
    parser.add_argument("--keep", help="write the job files here (one folder per size) instead of a temp folder")
    args = parser.parse_args()
    print(f"image URLs: {args.prefix}<40 hex digits>.jpg")
    print("| pending images | job.json (request) | pipeline.pb (graph) | bytes per image | fits 10 MB | seconds |")
    print("| ---: | ---: | ---: | ---: | --- | ---: |")
    for images in args.images:
        with tempfile.TemporaryDirectory() as scratch:
            folder = os.path.join(args.keep, str(images)) if args.keep else scratch
            os.makedirs(folder, exist_ok=True)
            started = time.perf_counter()
            request, graph = job_sizes(images, args.shard_size, args.prefix, folder, args.natural)
            fits = "yes" if graph <= GRAPH_LIMIT and request <= REQUEST_LIMIT else "no"
            print(
                f"| {images:,} | {request / MB:.2f} MB | {graph / MB:.2f} MB | {graph / images:.0f} | {fits} "
                f"| {time.perf_counter() - started:.0f} |"
            )


if __name__ == "__main__":
    main()
