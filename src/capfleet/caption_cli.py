"""`capfleet caption`: its options are RunConfig's fields, built from their metadata.

Each option's default, help text, flag and --help panel are written once, on the field (see
capfleet.options); this module adds only what the command line has and the API does not:
INPUT and -o, --prompt-file, --beam-runner, `--batch-size auto` and the CPU-sized --workers.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from pathlib import Path

import typer

from capfleet.cli_support import absolute, exit_now, fail, setup_logging
from capfleet.config import RUNNERS, ConfigError, RunConfig
from capfleet.cpus import default_workers
from capfleet.models.registry import ModelLoadError
from capfleet.runners.base import RunnerError
from capfleet.runners.state import ERRORS_DIR, FILTERED_DIR
from capfleet.runners.task_array import task_from_environment
from capfleet.sources.files import InputError

# --help lists the panels in this order; a plugin's own panel not named here comes last.
PANELS = ("Models", "Captioning", "Input", "Filters", "Output", "Caption hygiene", "Run", "Runners")
# Paths made absolute here: Beam, Ray and --gpus workers may start elsewhere, and runs record them.
PATHS = ("watermark_model",)
KEYWORD = inspect.Parameter.KEYWORD_ONLY


def _batch_size(value: str) -> int | None:
    if value == "auto":
        return None
    if not value.isdigit() or int(value) < 1:
        fail(f"--batch-size must be auto or a whole number >= 1, not {value!r}")
    return int(value)


# Where the command line's default differs from the API's on purpose: (annotation, default).
CLI_DEFAULTS = {
    "batch_size": (str, "auto"),  # parsed by _batch_size
    "workers": (int | None, None),  # None: default_workers(), the CPUs this process may use
}


def _option(field: dataclasses.Field, annotation) -> inspect.Parameter:
    meta = field.metadata
    flag = meta["flag"] or "--" + field.name.replace("_", "-")
    annotation, default = CLI_DEFAULTS.get(field.name, (annotation, field.default))
    is_bool = annotation in (bool, bool | None)
    declarations = [flag] if meta["flag"] or not is_bool else [f"{flag}/--no-{flag[2:]}"]
    option = typer.Option(
        default, *declarations, help=meta["help"], metavar=meta["metavar"], rich_help_panel=meta["panel"]
    )
    return inspect.Parameter(field.name, KEYWORD, default=option, annotation=annotation)


def _parameters() -> list[inspect.Parameter]:
    hints = typing.get_type_hints(RunConfig)
    fields = [field for field in dataclasses.fields(RunConfig) if field.metadata.get("cli", True)]
    options = [_option(field, hints[field.name]) for field in fields]
    options += [
        inspect.Parameter(
            "prompt_file",
            KEYWORD,
            default=typer.Option(None, help="Read the --prompt template from this file.", rich_help_panel="Captioning"),
            annotation=Path | None,
        ),
        inspect.Parameter(
            "beam_runner",
            KEYWORD,
            default=typer.Option(
                "DirectRunner",
                help="Beam runner: DirectRunner, DataflowRunner, FlinkRunner, SparkRunner, ...",
                rich_help_panel="Runners",
            ),
            annotation=str,
        ),
    ]
    options.append(
        inspect.Parameter(
            "output",
            KEYWORD,
            default=typer.Option(
                ...,
                "-o",
                "--output",
                metavar="OUT_DIR",
                help="Output dataset folder or fsspec URL (gs://, s3://).",
                rich_help_panel="Output",
            ),
            annotation=str,
        )
    )
    panel = {name: index for index, name in enumerate(PANELS)}
    options.sort(key=lambda parameter: panel.get(parameter.default.rich_help_panel, len(PANELS)))
    inputs = typer.Argument(..., metavar="INPUT", help="Folders, images, file lists (one path/URL per line) or URLs.")
    own = [
        inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context),
        inspect.Parameter("inputs", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=inputs, annotation=list[str]),
    ]
    return own + options


def caption(ctx: typer.Context, inputs: list[str], **options) -> None:
    """Caption images, rank candidates with a CLIP-style scorer, write a resumable dataset.

    With --runner beam, any further option is passed to Beam's PipelineOptions, as
    `--direct_num_workers 2` or `--direct_num_workers=2` (e.g. --project P --region R
    --temp_location gs://...); options Beam does not define need '='.
    """
    runner, beam_runner = options["runner"], options.pop("beam_runner")
    # Unknown --options land among the INPUTs (a variadic argument): they are Beam's.
    if runner not in RUNNERS:
        fail(f"--runner must be one of {', '.join(RUNNERS)}")
    if runner == "beam":
        from capfleet.runners.beam import split_beam_options

        inputs, beam_args = split_beam_options([*inputs, *ctx.args])
    else:
        beam_args = [*(spec for spec in inputs if spec.startswith("-")), *ctx.args]
        if beam_args:
            fail(f"unknown option(s) {' '.join(beam_args)} (Beam pipeline options need --runner beam)")
    if not inputs:
        fail("give at least one INPUT (a folder, an image, a file list or a URL)")
    try:
        task_index, task_count, task_source = task_from_environment(options["task_index"], options["task_count"])
    except ConfigError as exc:
        fail(str(exc))
    if task_index is not None and runner == "beam":
        fail("task arrays run capfleet's own runners in each task: drop --runner beam or the task flags")
    options.update(task_index=task_index, task_count=task_count, prompt=_prompt(options, options.pop("prompt_file")))
    setup_logging()
    options.update(
        output=absolute(options["output"]),
        batch_size=_batch_size(options["batch_size"]),
        workers=options["workers"] if options["workers"] is not None else default_workers(),
        **{name: absolute(options[name]) for name in PATHS if options[name]},
    )
    config = RunConfig(inputs=[absolute(spec) for spec in inputs], **options)
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
        fail(str(exc))
    except KeyboardInterrupt:
        typer.secho("interrupted: rerun the same command to resume", err=True)
        exit_now(130)
    for line in summary.lines():
        typer.echo(line)
    if summary.stats.failed:
        typer.echo(f"errors: {config.output}/{ERRORS_DIR}/")
    if summary.stats.filtered:
        typer.echo(f"filtered: {config.output}/{FILTERED_DIR}/")


def _prompt(options: dict, prompt_file: Path | None) -> str | None:
    """--prompt, or the template --prompt-file holds."""
    if prompt_file is None:
        return options["prompt"]
    if options["prompt"] is not None:
        fail("give --prompt or --prompt-file, not both")
    try:
        return prompt_file.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read --prompt-file {prompt_file}: {exc}")


caption.__signature__ = inspect.Signature(_parameters())
