"""The `capfleet` command line: a thin layer over the importable API."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import typer

from capfleet.config import ConfigError, RunConfig
from capfleet.models.registry import ModelLoadError
from capfleet.runners.state import ERRORS_DIR
from capfleet.sources.files import InputError
from capfleet.sources.storage import is_url

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Caption and re-caption image datasets at scale.")
log = logging.getLogger("capfleet")


def _setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    for noisy in ("httpx", "urllib3", "huggingface_hub", "filelock"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # e.g. the torchvision-less image-processor fallback notice
    hf_logging.disable_progress_bar()


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def _absolute(spec: str) -> str:
    return spec if is_url(spec) else os.path.abspath(spec)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def caption(
    ctx: typer.Context,
    inputs: list[str] = typer.Argument(..., help="Folders, images, file lists (one path/URL per line) or URLs."),
    output: str = typer.Option(..., "-o", "--output", help="Output dataset folder or fsspec URL (gs://, s3://)."),
    captioner: str = typer.Option("blip", help="blip | git | vit-gpt2 | none | HF hub id | local model folder."),
    scorer: str = typer.Option("clip", help="clip | siglip | HF hub id | local folder | none."),
    candidates: int = typer.Option(5, help="Candidate captions sampled per image; the best-scored is kept."),
    decoding: str = typer.Option("sample", help="sample (nucleus) | beam."),
    top_p: float = typer.Option(0.9, help="Nucleus sampling mass."),
    max_new_tokens: int = typer.Option(30, help="Longest caption, in tokens."),
    prompt: str | None = typer.Option(None, help="Text prefix (BLIP, GIT) or instruction (chat VLMs)."),
    seed: int = typer.Option(0, help="Sampling seed; same seed and settings give the same rows."),
    batch_size: int = typer.Option(8, help="Images per model call."),
    workers: int = typer.Option(4, help="Threads reading and decoding ahead of the model."),
    shard_size: int = typer.Option(1000, help="Images per output shard (unit of resume)."),
    limit: int | None = typer.Option(None, help="Only the first N images (exactly those a full run does first)."),
    device: str = typer.Option("auto", help="auto | cpu | cuda."),
    dtype: str = typer.Option("auto", help="auto (bf16/fp16 on GPU, fp32 on CPU) | float32 | float16 | bfloat16."),
    max_pixels: int = typer.Option(89_478_485, help="Decompression-bomb guard: larger images become errors."),
    overwrite: bool = typer.Option(False, help="Discard an earlier run in OUTPUT and start over."),
    progress: bool | None = typer.Option(None, "--progress/--no-progress", help="Progress bar (default: on a TTY)."),
    shard_retries: int = typer.Option(2, help="Times a shard that raised is redone from scratch."),
    embeddings: bool = typer.Option(
        False, "--embeddings", help="Keep the scorer's image and chosen-caption embeddings (SHARD/embeddings.npz)."
    ),
    runner: str = typer.Option("local", help="local (this process) | beam (Apache Beam)."),
    beam_runner: str = typer.Option(
        "DirectRunner", help="Beam runner: DirectRunner, DataflowRunner, FlinkRunner, SparkRunner, ..."
    ),
) -> None:
    """Caption images, rank candidates with a CLIP-style scorer, write a resumable dataset.

    With --runner beam, any further --option=value is passed to Beam's PipelineOptions
    (e.g. --project=P --region=R --temp_location=gs://... --direct_num_workers=2); give values
    with '=' so they cannot be mistaken for INPUTs.
    """
    # Unknown --options land among the INPUTs (a variadic argument): they are Beam's.
    beam_args = [*(spec for spec in inputs if spec.startswith("-")), *ctx.args]
    inputs = [spec for spec in inputs if not spec.startswith("-")]
    if runner not in ("local", "beam"):
        _fail("--runner must be local or beam")
    if beam_args and runner != "beam":
        _fail(f"unknown option(s) {' '.join(beam_args)} (Beam pipeline options need --runner beam)")
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
        batch_size=batch_size,
        workers=workers,
        shard_size=shard_size,
        limit=limit,
        device=device,
        dtype=dtype,
        max_pixels=max_pixels,
        overwrite=overwrite,
        progress=progress,
        shard_retries=shard_retries,
        embeddings=embeddings,
    )
    try:
        if runner == "beam":
            from capfleet.runners.beam import run_beam

            summary = run_beam(config, beam_args, beam_runner)
        else:
            from capfleet.runners.local import run_local

            summary = run_local(config)
    except (ConfigError, ModelLoadError, InputError, OSError) as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        typer.secho("interrupted: rerun the same command to resume", err=True)
        raise typer.Exit(130) from None
    for line in summary.lines():
        typer.echo(line)
    if summary.stats.failed:
        typer.echo(f"errors: {config.output}/{ERRORS_DIR}/")


@app.command()
def search(
    output: Path = typer.Argument(..., help="A caption output folder written with --embeddings."),
    query: str = typer.Argument(..., help="A text, or the path of an image to find similar images."),
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
    inputs: list[str] = typer.Argument(..., help="Folders, bucket prefixes or file lists."),
) -> None:
    """Print one image path/URL per line (TAB original caption when one exists): a file list."""
    from capfleet.sources import open_source

    try:
        for item in open_source([_absolute(spec) for spec in inputs]).items():
            caption = f"\t{item.original_text}" if item.original_text else ""
            sys.stdout.write(f"{item.source}{caption}\n")
    except (InputError, OSError) as exc:
        _fail(str(exc))


@app.command()
def merge(
    output: Path = typer.Argument(..., help="A capfleet output folder."),
    to: Path | None = typer.Option(None, "--to", help="Merged file (default OUTPUT/captions.jsonl)."),
) -> None:
    """Join all shards' metadata into one JSONL file (file_name relative to OUTPUT)."""
    from capfleet.merge import merge_shards

    try:
        target, rows = merge_shards(output, to)
    except (FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    typer.echo(f"wrote {rows} rows to {target}")


@app.command()
def synth(
    count: int = typer.Argument(..., help="Number of scenes to draw."),
    output: Path = typer.Option(..., "-o", "--output", help="Dataset folder (imagefolder layout)."),
    seed: int = typer.Option(0, help="Scene i depends only on (seed, i)."),
    size: int = typer.Option(96, help="Image side in pixels (clean style; random draws 64-512)."),
    shard_size: int = typer.Option(1000, help="Images per shard folder."),
    style: str = typer.Option("clean", help="clean: one renderer | random: domain randomisation of the drawing."),
) -> None:
    """Draw shape scenes with ground-truth captions: a dataset that needs no network."""
    from capfleet.synth import generate_synthetic_dataset

    try:
        summary = generate_synthetic_dataset(count, output, seed=seed, size=size, shard_size=shard_size, style=style)
    except (ValueError, FileExistsError) as exc:
        _fail(str(exc))
    typer.echo(f"wrote {summary.images} scenes in {summary.shards} shards to {output}")


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []},
    add_help_option=False,
)
def train(ctx: typer.Context) -> None:
    """Train a captioner (ViT encoder + transformer decoder + contrastive heads): DATA -o MODEL_DIR.

    All options are those of `python -m capfleet.train` (run `capfleet train --help`); under
    torchrun use `torchrun --nproc_per_node 8 -m capfleet.train DATA -o MODEL_DIR`.
    """
    from capfleet.train.__main__ import main as train_main

    train_main(list(ctx.args))


@app.command("eval")
def evaluate(
    data: Path = typer.Argument(..., help="Dataset with reference captions (capfleet synth or caption output)."),
    predictions: Path | None = typer.Option(None, "--predictions", help="A capfleet caption output folder."),
    model: str | None = typer.Option(None, "--model", help="Caption DATA with this captioner first."),
    model_scorer: str = typer.Option("none", help="With --model: the scorer that ranks its candidates."),
    candidates: int = typer.Option(1, help="With --model: candidates per image."),
    decoding: str = typer.Option("beam", help="With --model: sample | beam."),
    scorer: str = typer.Option("none", help="CLIP-style scorer for CLIPScore and retrieval R@K, or none."),
    json_path: Path | None = typer.Option(None, "--json", help="Also write all results to this JSON file."),
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


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
