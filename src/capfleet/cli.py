"""The `capfleet` command line: a thin layer over the importable API."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from capfleet.caption_cli import caption
from capfleet.cli_support import absolute, fail, setup_logging
from capfleet.config import ConfigError
from capfleet.decoding import CANDIDATES, DEFAULT
from capfleet.errors import MissingExtra, require
from capfleet.models.registry import ModelLoadError
from capfleet.runners.state import RunState
from capfleet.sources.files import InputError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Caption and re-caption image datasets at scale.")
app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(caption)


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

    setup_logging()
    try:
        hits = run_search(output, query, k, scorer, device)
    except (FileNotFoundError, ValueError, ModelLoadError) as exc:
        fail(str(exc))
    for hit in hits:
        typer.echo(f"{hit.score:.4f}\t{hit.key}\t{hit.image_path}\t{hit.text}")


@app.command("list")
def list_images(
    inputs: list[str] = typer.Argument(..., metavar="INPUT", help="Folders, bucket prefixes or file lists."),
) -> None:
    """Print one image path/URL per line (TAB original caption when one exists): a file list."""
    from capfleet.sources import FileSource, open_source
    from capfleet.sources.lists import ListSource

    specs = [absolute(spec) for spec in inputs]
    try:
        if not isinstance(open_source(specs), (FileSource, ListSource)):
            fail("capfleet list takes folders and file lists; tars and tables are read file by file by caption")
        for item in FileSource(specs).items():
            caption = f"\t{item.original_text}" if item.original_text else ""
            sys.stdout.write(f"{item.source}{caption}\n")
    except (InputError, OSError) as exc:
        fail(str(exc))


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
        fail(str(exc))
    typer.echo(f"wrote {rows} rows to {target}")


@app.command()
def status(
    output: str = typer.Argument(..., metavar="OUT_DIR", help="A caption run's output folder or bucket URL."),
) -> None:
    """Say which shards of a run are still missing (exit 1 while any is), e.g. after a task array."""
    from capfleet.io.location import Location
    from capfleet.runners.task_array import task_of

    state = RunState(Location(absolute(output)))
    if not state.has_run():
        fail(f"{output} holds no capfleet run")
    try:
        shards, missing = state.recorded_plan(), state.missing_shards()
    except (OSError, ValueError) as exc:
        fail(f"cannot read the run in {output}: {exc}")
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
    candidates: int = typer.Option(CANDIDATES, help="Candidate captions per image, as in the run you plan."),
    max_new_tokens: int = typer.Option(DEFAULT.max_new_tokens, help="Longest caption, as in the run you plan."),
) -> None:
    """Time your models on this machine per dtype and batch size, and recommend run settings."""
    from capfleet.bench import decode_rate, model_rows, recommend

    try:
        sizes = sorted({int(size) for size in batch_sizes.split(",")})
    except ValueError:
        fail(f"--batch-sizes must be comma-separated whole numbers, not {batch_sizes!r}")
    if not sizes or sizes[0] < 1 or candidates < 1 or max_new_tokens < 1:
        fail("--batch-sizes, --candidates and --max-new-tokens must be >= 1")
    setup_logging()
    try:
        rows, side = model_rows(captioner, scorer, device, sizes, candidates, max_new_tokens)
    except (ModelLoadError, RuntimeError, OSError) as exc:
        fail(str(exc))
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
        fail(f"{output} is a file: -o needs a folder (new, or an earlier synth output to complete)")
    try:
        summary = generate_synthetic_dataset(count, output, seed=seed, size=size, shard_size=shard_size, style=style)
    except (ValueError, FileExistsError) as exc:
        fail(str(exc))
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
        fail("give exactly one of --predictions OUT_DIR or --model M")
    setup_logging()
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
        fail(str(exc))
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
    setup_logging()
    try:
        require(("fastapi", "uvicorn"), "serve", "capfleet serve")
    except MissingExtra as exc:
        fail(str(exc))
    from capfleet.serve.server import serve as run_server
    from capfleet.serve.settings import ServeSettings

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
        fail(str(exc))


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
