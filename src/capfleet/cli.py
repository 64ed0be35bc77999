"""The `capfleet` command line: a thin layer over the importable API."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import typer

from capfleet.config import RUNNERS, ConfigError, RunConfig
from capfleet.cpus import default_workers
from capfleet.io.paths import is_url
from capfleet.models.registry import CAPTIONER_ALIASES, SCORER_ALIASES, ModelLoadError, model_names
from capfleet.runners.base import RunnerError
from capfleet.runners.state import ERRORS_DIR, FILTERED_DIR, RunState
from capfleet.runners.task_array import task_from_environment
from capfleet.sources.files import InputError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Caption and re-caption image datasets at scale.")
log = logging.getLogger("capfleet")


def _setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    for noisy in ("httpx", "urllib3", "huggingface_hub", "filelock"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    from huggingface_hub.utils import logging as hub_logging

    hub_logging.set_verbosity_error()  # e.g. one "Retrying in 8s" warning per retry, each printed twice
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # e.g. the torchvision-less image-processor fallback notice
    hf_logging.disable_progress_bar()


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def _exit_now(code: int) -> None:
    """Exit without joining worker threads: one stuck on a dead mount or a silent server would
    otherwise keep a Ctrl-C'd run alive. Shards are published atomically, so nothing is lost."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _batch_size(value: str) -> int | None:
    if value == "auto":
        return None
    if not value.isdigit() or int(value) < 1:
        _fail(f"--batch-size must be auto or a whole number >= 1, not {value!r}")
    return int(value)


def _absolute(spec: str) -> str:
    return spec if is_url(spec) else os.path.abspath(spec)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def caption(
    ctx: typer.Context,
    inputs: list[str] = typer.Argument(
        ..., metavar="INPUT", help="Folders, images, file lists (one path/URL per line) or URLs."
    ),
    output: str = typer.Option(
        ..., "-o", "--output", metavar="OUT_DIR", help="Output dataset folder or fsspec URL (gs://, s3://)."
    ),
    captioner: str = typer.Option(
        "blip",
        metavar="NAME",
        help=f"{model_names(CAPTIONER_ALIASES)}, a hub id (org/name), a local model folder, or none (copy only).",
    ),
    scorer: str = typer.Option(
        "auto",
        metavar="NAME",
        help=f"auto (the captioner's own scorer: builtin and capfleet-trained models; else clip), "
        f"{model_names(SCORER_ALIASES)}, a hub id, a local model folder, or none.",
    ),
    candidates: int = typer.Option(5, help="Candidate captions sampled per image; the best-scored is kept."),
    decoding: str = typer.Option("sample", help="sample (nucleus) | beam."),
    top_p: float = typer.Option(0.9, help="Nucleus sampling mass."),
    max_new_tokens: int = typer.Option(30, help="Longest caption, in tokens."),
    prompt: str | None = typer.Option(
        None, help="Text prefix (BLIP, GIT) or instruction (chat VLMs); may use {original_text} and json fields."
    ),
    prompt_file: Path | None = typer.Option(None, help="Read the --prompt template from this file."),
    seed: int = typer.Option(0, help="Sampling seed; same seed and settings give the same rows."),
    batch_size: str = typer.Option(
        "auto", help="Images per model call, or auto: measured on CPU, largest that fits on CUDA (cached)."
    ),
    workers: int | None = typer.Option(
        None, help="Threads reading and decoding ahead of the model (default: the CPUs this process may use, >= 4)."
    ),
    shard_size: int = typer.Option(1000, help="Images per output shard (unit of resume)."),
    limit: int | None = typer.Option(None, help="Only the first N images (exactly those a full run does first)."),
    device: str = typer.Option("auto", help="auto | cpu | cuda."),
    dtype: str = typer.Option(
        "auto",
        help="auto (bf16/fp16 on GPU; bf16 on CPUs with AMX or AVX512-BF16, else fp32) | float32 | float16 | bfloat16",
    ),
    max_pixels: int = typer.Option(89_478_485, help="Decompression-bomb guard: larger images become errors."),
    max_bytes: int = typer.Option(
        100_000_000, help="Files larger than this (bytes) become errors; enforced while reading."
    ),
    overwrite: bool = typer.Option(False, help="Discard an earlier run in OUTPUT and start over."),
    progress: bool | None = typer.Option(None, "--progress/--no-progress", help="Progress bar (default: on a TTY)."),
    shard_retries: int = typer.Option(2, help="Times a shard that raised is redone from scratch."),
    output_format: str = typer.Option(
        "imagefolder", "--format", help="imagefolder | webdataset (a tar per shard) | parquet | artifacts."
    ),
    txt: str = typer.Option(
        "none", help="best | all: also write KEY.txt beside each image (LoRA trainers' layout); all: every candidate."
    ),
    images: bool = typer.Option(True, "--images/--no-images", help="parquet: --no-images writes captions only."),
    image_column: str | None = typer.Option(None, help="Table inputs: the image column (default: autodetect)."),
    caption_column: str | None = typer.Option(None, help="Table inputs: the original caption column."),
    retry_errors: bool = typer.Option(False, help="Redo only the images recorded as errors in finished shards."),
    http_timeout: float = typer.Option(30.0, help="Seconds one http(s) image download may take, body included."),
    min_side: int | None = typer.Option(None, help="Filter images whose shorter side is below this (pixels)."),
    max_aspect_ratio: float | None = typer.Option(
        None, help="Filter images longer than this ratio (default: beyond 20:1 is a decode error)."
    ),
    max_text_area: float | None = typer.Option(
        None, help="Filter images whose OCR text boxes cover more than this fraction (extra 'ocr')."
    ),
    watermark_model: str | None = typer.Option(None, help="ONNX watermark classifier (docs/filters.md)."),
    watermark_threshold: float | None = typer.Option(None, help="Filter above this watermark probability (0.5)."),
    nsfw_threshold: float | None = typer.Option(None, help="Filter above this NudeNet score (extra 'nsfw')."),
    dedup: str | None = typer.Option(None, help="exact (sha256) | near (also perceptual hash): keep first copies."),
    dedup_distance: int | None = typer.Option(None, help="With --dedup near: max Hamming distance of 64 (8)."),
    threads: int | None = typer.Option(
        None, help="Torch threads for the models (default: the CPUs this process may use, affinity and cgroup quota)."
    ),
    keep_names: bool = typer.Option(
        False, help="Name output files <original stem>_<key>.ext instead of <key>.ext (unique, stable on rerun)."
    ),
    quantize: str | None = typer.Option(
        None, help="int8: dynamic int8 linear layers, for CPUs without native bf16 (use with --dtype float32)."
    ),
    embeddings: bool = typer.Option(
        False, "--embeddings", help="Keep the scorer's image and chosen-caption embeddings (SHARD/embeddings.npz)."
    ),
    runner: str = typer.Option("local", help="local (this process; --gpus N processes) | beam (Apache Beam) | ray."),
    ray_address: str | None = typer.Option(
        None, help="Ray: the cluster to join (default: RAY_ADDRESS, else a running local cluster, else a new one)."
    ),
    ray_workers: int | None = typer.Option(None, help="Ray: actors, each loading the models once (default: all fit)."),
    ray_cpus_per_worker: float = typer.Option(1.0, help="Ray: CPUs each actor reserves."),
    gpus_per_worker: float = typer.Option(0.0, help="Ray: GPUs each actor reserves (0.5: two actors per GPU)."),
    beam_runner: str = typer.Option(
        "DirectRunner", help="Beam runner: DirectRunner, DataflowRunner, FlinkRunner, SparkRunner, ..."
    ),
    engine: str = typer.Option("transformers", help="transformers | vllm | openai (an OpenAI-compatible endpoint)."),
    api_base: str | None = typer.Option(None, help="openai: endpoint base URL, e.g. http://127.0.0.1:8000/v1."),
    api_key_env: str = typer.Option("OPENAI_API_KEY", help="openai: environment variable holding the API key."),
    concurrency: int = typer.Option(8, help="openai: requests in flight (also raise --batch-size to match)."),
    request_timeout: float = typer.Option(60.0, help="openai: seconds per request."),
    retries: int = typer.Option(4, help="openai: retries after 429, 5xx, timeouts (exponential backoff)."),
    image_size: int = typer.Option(0, help="openai: shorter side images are sent at (0: the model's own if known)."),
    tensor_parallel_size: int = typer.Option(1, help="vllm: GPUs one engine spans."),
    gpus: int = typer.Option(1, help="One engine per GPU, shards divided among them (local runner)."),
    task_index: int | None = typer.Option(
        None,
        help="This process is task I of a task array (default: SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN, "
        "or Kubernetes' JOB_COMPLETION_INDEX); it takes the pending shards that belong to it.",
    ),
    task_count: int | None = typer.Option(
        None, help="Tasks in the array (default: SLURM_ARRAY_TASK_COUNT; a Kubernetes Job needs it given)."
    ),
    hygiene: bool = typer.Option(True, "--hygiene/--no-hygiene", help="Drop degenerate candidates before ranking."),
    strip_openers: bool = typer.Option(False, help="Strip boilerplate openers ('This image shows ...')."),
    min_words: int = typer.Option(1, help="Hygiene: shorter candidates are degenerate."),
    max_words: int = typer.Option(0, help="Hygiene: longer candidates are degenerate (0: no limit)."),
    resample_attempts: int = typer.Option(2, help="Hygiene: re-samples of an image whose candidates all fail."),
) -> None:
    """Caption images, rank candidates with a CLIP-style scorer, write a resumable dataset.

    With --runner beam, any further option is passed to Beam's PipelineOptions, as
    `--direct_num_workers 2` or `--direct_num_workers=2` (e.g. --project P --region R
    --temp_location gs://...); options Beam does not define need '='.
    """
    # Unknown --options land among the INPUTs (a variadic argument): they are Beam's.
    if runner not in RUNNERS:
        _fail(f"--runner must be one of {', '.join(RUNNERS)}")
    if runner == "beam":
        from capfleet.runners.beam import split_beam_options

        inputs, beam_args = split_beam_options([*inputs, *ctx.args])
    else:
        beam_args = [*(spec for spec in inputs if spec.startswith("-")), *ctx.args]
        if beam_args:
            _fail(f"unknown option(s) {' '.join(beam_args)} (Beam pipeline options need --runner beam)")
    if not inputs:
        _fail("give at least one INPUT (a folder, an image, a file list or a URL)")
    try:
        task_index, task_count, task_source = task_from_environment(task_index, task_count)
    except ConfigError as exc:
        _fail(str(exc))
    if task_index is not None and runner == "beam":
        _fail("task arrays run capfleet's own runners in each task: drop --runner beam or the task flags")
    if prompt_file is not None:
        if prompt is not None:
            _fail("give --prompt or --prompt-file, not both")
        try:
            prompt = prompt_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            _fail(f"cannot read --prompt-file {prompt_file}: {exc}")
    _setup_logging()
    config = RunConfig(
        inputs=[_absolute(spec) for spec in inputs],
        output=_absolute(output),
        captioner=captioner,
        scorer=scorer,
        candidates=candidates,
        decoding=decoding,
        top_p=top_p,
        max_new_tokens=max_new_tokens,
        prompt=prompt,
        seed=seed,
        batch_size=_batch_size(batch_size),
        workers=workers if workers is not None else default_workers(),
        shard_size=shard_size,
        limit=limit,
        device=device,
        dtype=dtype,
        max_pixels=max_pixels,
        max_bytes=max_bytes,
        overwrite=overwrite,
        progress=progress,
        shard_retries=shard_retries,
        format=output_format,
        txt=txt,
        images=images,
        image_column=image_column,
        caption_column=caption_column,
        retry_errors=retry_errors,
        http_timeout=http_timeout,
        min_side=min_side,
        max_aspect_ratio=max_aspect_ratio,
        max_text_area=max_text_area,
        watermark_model=_absolute(watermark_model) if watermark_model else None,
        watermark_threshold=watermark_threshold,
        nsfw_threshold=nsfw_threshold,
        dedup=dedup,
        dedup_distance=dedup_distance,
        engine=engine,
        api_base=api_base,
        api_key_env=api_key_env,
        concurrency=concurrency,
        request_timeout=request_timeout,
        retries=retries,
        image_size=image_size,
        tensor_parallel_size=tensor_parallel_size,
        gpus=gpus,
        hygiene=hygiene,
        strip_openers=strip_openers,
        min_words=min_words,
        max_words=max_words,
        resample_attempts=resample_attempts,
        threads=threads,
        keep_names=keep_names,
        embeddings=embeddings,
        quantize=quantize,
        task_index=task_index,
        task_count=task_count,
        runner=runner,
        ray_address=ray_address,
        ray_workers=ray_workers,
        ray_cpus_per_worker=ray_cpus_per_worker,
        gpus_per_worker=gpus_per_worker,
    )
    if task_index is not None:
        typer.echo(f"task {task_index} of {task_count}" + (f" (from {task_source})" if task_source else ""), err=True)
    try:
        if runner == "beam":
            from capfleet.runners.beam import run_beam

            summary = run_beam(config, beam_args, beam_runner)
        else:
            from capfleet.runners.lifecycle import run_caption

            summary = run_caption(config)
    except (ConfigError, ModelLoadError, InputError, OSError, RunnerError) as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        typer.secho("interrupted: rerun the same command to resume", err=True)
        _exit_now(130)
    for line in summary.lines():
        typer.echo(line)
    if summary.stats.failed:
        typer.echo(f"errors: {config.output}/{ERRORS_DIR}/")
    if summary.stats.filtered:
        typer.echo(f"filtered: {config.output}/{FILTERED_DIR}/")


@app.command()
def search(
    output: Path = typer.Argument(..., metavar="OUT_DIR", help="A caption output folder written with --embeddings."),
    query: str = typer.Argument(..., metavar="QUERY", help="A text, or the path of an image to find similar images."),
    k: int = typer.Option(10, "-k", help="How many images to print."),
    scorer: str | None = typer.Option(None, help="Embed the query with this scorer (default: the run's)."),
    device: str = typer.Option("auto", help="auto | cpu | cuda."),
) -> None:
    """Print the images of OUTPUT that best match QUERY, best first: score, key, image path, caption."""
    from capfleet.search import search as run_search

    _setup_logging()
    try:
        hits = run_search(output, query, k, scorer, device)
    except (FileNotFoundError, ValueError, ModelLoadError) as exc:
        _fail(str(exc))
    for hit in hits:
        typer.echo(f"{hit.score:.4f}\t{hit.key}\t{hit.image_path}\t{hit.text}")


@app.command("list")
def list_images(
    inputs: list[str] = typer.Argument(..., metavar="INPUT", help="Folders, bucket prefixes or file lists."),
) -> None:
    """Print one image path/URL per line (TAB original caption when one exists): a file list."""
    from capfleet.sources import FileSource, open_source
    from capfleet.sources.lists import ListSource

    specs = [_absolute(spec) for spec in inputs]
    try:
        if not isinstance(open_source(specs), (FileSource, ListSource)):
            _fail("capfleet list takes folders and file lists; tars and tables are read file by file by caption")
        for item in FileSource(specs).items():
            caption = f"\t{item.original_text}" if item.original_text else ""
            sys.stdout.write(f"{item.source}{caption}\n")
    except (InputError, OSError) as exc:
        _fail(str(exc))


@app.command()
def merge(
    output: Path = typer.Argument(..., metavar="OUT_DIR", help="A folder `capfleet caption -o` wrote."),
    to: Path | None = typer.Option(None, "--to", metavar="FILE", help="Merged file (default OUT_DIR/captions.jsonl)."),
) -> None:
    """Join all shards' metadata into one JSONL file (file_name relative to OUTPUT)."""
    from capfleet.merge import merge_shards

    try:
        target, rows = merge_shards(output, to)
    except (FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    typer.echo(f"wrote {rows} rows to {target}")


@app.command()
def status(
    output: str = typer.Argument(..., metavar="OUT_DIR", help="A caption run's output folder or bucket URL."),
) -> None:
    """Say which shards of a run are still missing (exit 1 while any is), e.g. after a task array."""
    from capfleet.io.location import Location
    from capfleet.runners.task_array import task_of

    state = RunState(Location(_absolute(output)))
    if not state.has_run():
        _fail(f"{output} holds no capfleet run")
    try:
        shards, missing = state.recorded_plan(), state.missing_shards()
    except (OSError, ValueError) as exc:
        _fail(f"cannot read the run in {output}: {exc}")
    typer.echo(f"shards: {len(shards)}  done: {len(shards) - len(missing)}  missing: {len(missing)}")
    tasks = state.recorded_tasks()
    for shard in missing[:20]:
        owner = f" (task {task_of(shard.name, tasks)} of {tasks})" if tasks else ""
        typer.echo(f"missing {shard.name}{owner}")
    if len(missing) > 20:
        typer.echo(f"... and {len(missing) - 20} more")
    if missing:
        typer.echo("rerun the tasks that own them, or one plain `capfleet caption` with the same settings")
        raise typer.Exit(1)


@app.command()
def bench(
    captioner: str = typer.Option("blip", help="Any name --captioner takes in `capfleet caption`."),
    scorer: str = typer.Option("clip", help="Any name --scorer takes, or none."),
    device: str = typer.Option("auto", help="auto | cpu | cuda."),
    batch_sizes: str = typer.Option("1,2,4,8,16", help="Comma-separated batch sizes to time."),
    candidates: int = typer.Option(5, help="Candidate captions per image, as in the run you plan."),
    max_new_tokens: int = typer.Option(30, help="Longest caption, as in the run you plan."),
) -> None:
    """Time your models on this machine per dtype and batch size, and recommend run settings."""
    from capfleet.bench import decode_rate, model_rows, recommend

    try:
        sizes = sorted({int(size) for size in batch_sizes.split(",")})
    except ValueError:
        _fail(f"--batch-sizes must be comma-separated whole numbers, not {batch_sizes!r}")
    if not sizes or sizes[0] < 1 or candidates < 1 or max_new_tokens < 1:
        _fail("--batch-sizes, --candidates and --max-new-tokens must be >= 1")
    _setup_logging()
    try:
        rows, side = model_rows(captioner, scorer, device, sizes, candidates, max_new_tokens)
    except (ModelLoadError, RuntimeError, OSError) as exc:
        _fail(str(exc))
    per_thread = decode_rate(side)
    typer.echo("| dtype | batch size | images/s |")
    typer.echo("| --- | ---: | ---: |")
    for row in rows:
        typer.echo(f"| {row.dtype} | {row.batch_size} | {row.images_per_second:.2f} |")
    typer.echo(f"decoding: {per_thread:.0f} photo-sized images/s per reader thread")
    typer.echo(f"recommended: {recommend(rows, per_thread)}")


@app.command()
def synth(
    count: int = typer.Argument(..., metavar="N", help="Number of scenes to draw."),
    output: Path = typer.Option(..., "-o", "--output", metavar="DIR", help="New dataset folder (imagefolder layout)."),
    seed: int = typer.Option(0, help="Scene i depends only on (seed, i)."),
    size: int = typer.Option(96, help="Image side in pixels (clean style; random draws 64-512)."),
    shard_size: int = typer.Option(1000, help="Images per shard folder."),
    style: str = typer.Option("clean", help="clean: one renderer | random: domain randomisation of the drawing."),
) -> None:
    """Draw shape scenes with ground-truth captions: a dataset that needs no network."""
    from capfleet.synth import generate_synthetic_dataset

    if output.is_file():
        _fail(f"{output} is a file: -o needs a folder (new, or an earlier synth output to complete)")
    try:
        summary = generate_synthetic_dataset(count, output, seed=seed, size=size, shard_size=shard_size, style=style)
    except (ValueError, FileExistsError) as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        typer.secho("interrupted: rerun the same command to finish (complete shards are kept)", err=True)
        raise typer.Exit(130) from None
    typer.echo(f"wrote {summary.images} scenes in {summary.shards} shards to {output}")


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []},
    add_help_option=False,
)
def train(ctx: typer.Context) -> None:
    """Train a captioner (ViT encoder + transformer decoder + contrastive heads): DATA -o MODEL_DIR.

    Its options are those of `python -m capfleet.train` (`capfleet train --help` lists them);
    they are parsed there, so importing torch waits until training is asked for.
    """
    from capfleet.train.__main__ import main as train_main

    train_main(list(ctx.args), prog_name="capfleet train")


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []},
    add_help_option=False,
)
def distill(ctx: typer.Context) -> None:
    """Distil a teacher captioner + scorer into a small fast student: DATA --teacher NAME -o STUDENT_DIR.

    Its options are those of `python -m capfleet.train.distill_cli` (`capfleet distill --help` lists them).
    """
    from capfleet.train.distill_cli import main as distill_main

    distill_main(list(ctx.args), prog_name="capfleet distill")


@app.command("eval")
def evaluate(
    data: Path = typer.Argument(
        ..., metavar="DATA", help="Dataset with reference captions (capfleet synth or caption output)."
    ),
    predictions: Path | None = typer.Option(
        None, "--predictions", metavar="OUT_DIR", help="A capfleet caption output folder."
    ),
    model: str | None = typer.Option(
        None, "--model", metavar="NAME", help="Caption DATA with this captioner first (a name as for caption)."
    ),
    model_scorer: str = typer.Option(
        "none", metavar="NAME", help="With --model: the scorer that ranks its candidates."
    ),
    candidates: int = typer.Option(1, help="With --model: candidates per image."),
    decoding: str = typer.Option("beam", help="With --model: sample | beam."),
    scorer: str = typer.Option(
        "none", metavar="NAME", help="CLIP-style scorer for CLIPScore and retrieval R@K, or none."
    ),
    json_path: Path | None = typer.Option(
        None, "--json", metavar="FILE", help="Also write all results to this JSON file."
    ),
    meteor: bool = typer.Option(True, "--meteor/--no-meteor", help="METEOR (needs Java; ~10 s JVM start)."),
    device: str = typer.Option("auto", help="auto | cpu | cuda."),
) -> None:
    """Score captions against DATA's references: BLEU, METEOR, ROUGE-L, CIDEr, CLIPScore, retrieval R@K."""
    from capfleet.evaluate import evaluate as run_evaluation
    from capfleet.evaluate import format_table, read_references, write_json

    if (predictions is None) == (model is None):
        _fail("give exactly one of --predictions OUT_DIR or --model M")
    _setup_logging()
    try:
        mapping = None
        if model is not None:
            from capfleet.evaluate.predict import caption_references

            mapping = caption_references(
                read_references(data), model, model_scorer, candidates=candidates, decoding=decoding, device=device
            )
        results = run_evaluation(
            data, predictions, None if scorer == "none" else scorer, predictions=mapping, meteor=meteor, device=device
        )
    except (FileNotFoundError, ValueError, KeyError, ImportError, ModelLoadError) as exc:
        _fail(str(exc))
    typer.echo(format_table(results))
    if json_path is not None:
        typer.echo(f"wrote {write_json(results, json_path)}")


@app.command()
def serve(
    captioner: str = typer.Option("blip", help="Any name `caption` takes (builtin works offline)."),
    scorer: str = typer.Option("clip", help="Any name `caption` takes, none, or auto (the captioner's own heads)."),
    host: str = typer.Option(
        "127.0.0.1", help="Address to bind (the default: this machine only); set --api-key for others."
    ),
    port: int = typer.Option(8000, help="TCP port."),
    candidates: int = typer.Option(5, help="Default candidates per image (requests may ask for others)."),
    max_batch: int = typer.Option(8, help="Images gathered into one model call."),
    max_wait_ms: float = typer.Option(10.0, help="How long a request waits for others to batch with."),
    max_queue: int = typer.Option(256, help="Images waiting for the model before requests get 503."),
    max_upload_mb: float = typer.Option(20.0, help="Largest request body, in MB."),
    max_images: int = typer.Option(16, help="Images per request."),
    request_timeout: float = typer.Option(60.0, help="Seconds a request may wait for the model (then 504)."),
    allow_urls: bool = typer.Option(False, help="Let clients send http(s) image URLs (public addresses only)."),
    allow_private_urls: bool = typer.Option(
        False, help="With --allow-urls, also fetch from loopback and private addresses (a trusted network only)."
    ),
    api_key: str | None = typer.Option(None, envvar="CAPFLEET_API_KEY", help="Require this bearer token on /v1/*."),
    cors_origin: list[str] = typer.Option([], help="Allow browser calls from this origin (repeatable); off if none."),
    device: str = typer.Option("auto", help="auto | cpu | cuda."),
    dtype: str = typer.Option("auto", help="auto | float32 | float16 | bfloat16."),
    max_pixels: int = typer.Option(89_478_485, help="Decompression-bomb guard for uploaded images."),
) -> None:
    """Serve a captioner over HTTP: /v1/caption, embeddings, OpenAI chat completions and a web page at /."""
    _setup_logging()
    try:
        from capfleet.serve.server import serve as run_server
        from capfleet.serve.settings import ServeSettings
    except ImportError as exc:
        _fail(f"capfleet serve needs the serve extra ({exc.name} is missing): pip install 'capfleet[serve]'")
    settings = ServeSettings(
        max_batch=max_batch,
        max_wait_ms=max_wait_ms,
        max_queue=max_queue,
        max_upload_mb=max_upload_mb,
        max_images=max_images,
        request_timeout_s=request_timeout,
        candidates=candidates,
        allow_urls=allow_urls,
        allow_private_urls=allow_private_urls,
        api_key=api_key or None,
        cors_origins=list(cors_origin),
    )
    try:
        run_server(captioner, scorer, host, port, settings, device=device, dtype=dtype, max_pixels=max_pixels)
    except (ConfigError, ModelLoadError, ValueError, OSError) as exc:
        _fail(str(exc))


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
