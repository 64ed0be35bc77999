"""``capfleet train`` and ``python -m capfleet.train`` (what torchrun runs): one typer command.

Its options are TrainConfig's fields, built from the dataclass so the two cannot drift; each
field's help text is in FIELD_HELP (a field without one fails at import, not in a user's face).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
from collections.abc import Callable

import typer

from capfleet.modeling.configuration import PRESETS

from .checkpoint import checkpoint_dirs
from .run import CKPT_DIR
from .trainer import TrainConfig, TrainingInterrupted, TrainResult, train_main

_SKIP = {"data_dir", "output_dir", "model_overrides"}

FIELD_HELP = {
    "preset": f"Model size: {', '.join(PRESETS)}.",
    "image_size": "Image side in pixels the model sees (a multiple of the patch size).",
    "max_length": "Longest caption in tokens; longer ones are truncated.",
    "batch_size": "Images per process per micro-batch (global batch: x processes x --grad-accum).",
    "grad_accum": "Micro-batches accumulated per optimizer step.",
    "max_steps": "Optimizer steps to train for.",
    "lr": "Peak learning rate (AdamW).",
    "weight_decay": "AdamW weight decay.",
    "warmup_steps": "Linear warmup steps before the cosine decay.",
    "min_lr_ratio": "Final learning rate as a fraction of --lr.",
    "max_grad_norm": "Gradient clipping norm (0: no clipping).",
    "contrastive_weight": "Weight of the CLIP-style image-text loss (0: captioning loss only).",
    "hard_negatives": "Also rank each caption above a copy with one word swapped (teaches the scorer).",
    "relation_negatives": "With --hard-negatives: also rank each caption above its copy with left/right and"
    " above/below swapped (teaches the scorer spatial relations).",
    "object_relations": "With --object-loss-weight: each image token also says in which directions (left of,"
    " right of, above, below) its object stands to another object (teaches spatial relations).",
    "object_loss_weight": "Weight of an auxiliary loss: which colour+shape objects the image holds, read from a"
    " synth dataset's `scene` column (0: off). Teaches the image encoder shapes the caption loss alone did not.",
    "caption_mode": "text: one sample per image (its `text`); all: one per candidate caption too.",
    "min_freq": "Words seen fewer times are left out of the vocabulary.",
    "held_out_fraction": "Fraction of images kept out of training for --eval-every losses, in [0, 1).",
    "eval_every": "Held-out loss every N steps (0: never).",
    "save_every": "Checkpoint every N steps, for resume (0: only at the end).",
    "keep_checkpoints": "Checkpoints kept on disk (older ones are deleted).",
    "log_every": "Append a row to train_log.jsonl every N steps.",
    "resume": "Continue from the newest checkpoint in MODEL_DIR when there is one.",
    "seed": "Seed for weights, data order and sampling.",
    "num_workers": "DataLoader worker processes per training process.",
    "device": "auto | cpu | cuda.",
    "mixed_precision": "auto | bf16 (bf16 autocast on CUDA; ignored on CPU) | no.",
    "num_threads": "Torch threads per process (default: torch's; pass 1 on a shared or small CPU machine).",
    "deterministic": "Deterministic kernels: bit-exact resume on CUDA too, slower.",
    "progress": "Show a progress bar.",
    "plot": "Write loss.png at the end (needs matplotlib).",
    "stop_after": "Checkpoint and stop at this step (time-boxed jobs); rerun to go on.",
}

# Lower bounds (fields and --nproc), checked before any data is read: never a ZeroDivisionError mid-run.
FIELD_MIN = {
    "image_size": 8,
    "max_length": 2,
    "batch_size": 1,
    "grad_accum": 1,
    "max_steps": 1,
    "warmup_steps": 0,
    "min_freq": 1,
    "object_loss_weight": 0,
    "eval_every": 0,
    "save_every": 0,
    "keep_checkpoints": 1,
    "log_every": 1,
    "num_workers": 0,
    "num_threads": 1,
    "stop_after": 1,
    "nproc": 1,
}
# Settings with a fixed set of values, checked before any data is read.
FIELD_CHOICES = {
    "preset": tuple(PRESETS),
    "caption_mode": ("text", "all"),
    "device": ("auto", "cpu", "cuda"),
    "mixed_precision": ("auto", "bf16", "no"),
}


def _annotation(default: object) -> type:
    if default is None:
        return int | None
    return type(default) if isinstance(default, (bool, int, float, str)) else str


def _option(field: dataclasses.Field, help_texts: dict[str, str] = FIELD_HELP) -> inspect.Parameter:
    flag = "--" + field.name.replace("_", "-")
    declarations = [f"{flag}/--no-{flag[2:]}"] if isinstance(field.default, bool) else [flag]
    option = typer.Option(field.default, *declarations, help=help_texts[field.name])
    keyword = inspect.Parameter.KEYWORD_ONLY
    return inspect.Parameter(field.name, keyword, default=option, annotation=_annotation(field.default))


def _parameters(skip: frozenset[str] = frozenset()) -> list[inspect.Parameter]:
    """DATA, -o, --nproc, --model-overrides and every TrainConfig field but those in ``skip``."""
    keyword = inspect.Parameter.KEYWORD_ONLY
    own = [
        inspect.Parameter(
            "data_dir",
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            default=typer.Argument(..., metavar="DATA", help="Captioned imagefolder dataset(s): */metadata.jsonl."),
            annotation=list[str],
        ),
        inspect.Parameter(
            "output_dir",
            keyword,
            default=typer.Option(
                ..., "-o", "--output-dir", metavar="MODEL_DIR", help="Model folder (HF bundle, logs, checkpoints)."
            ),
            annotation=str,
        ),
        inspect.Parameter(
            "nproc",
            keyword,
            default=typer.Option(1, help="Local DDP processes (without torchrun)."),
            annotation=int,
        ),
        inspect.Parameter(
            "model_overrides",
            keyword,
            default=typer.Option("{}", metavar="JSON", help='Model sizes over the preset, e.g. {"decoder_layers": 3}.'),
            annotation=str,
        ),
    ]
    fields = [f for f in dataclasses.fields(TrainConfig) if f.name not in _SKIP | skip]
    return own + [_option(field) for field in fields]


def _fail(message: str, code: int = 2) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _interrupted_message(output_dir: str, step: int | None) -> str:
    """Where Ctrl-C stopped (`step` is None when --nproc children were training) and where a rerun goes on."""
    stopped = "interrupted" if step is None else f"interrupted after step {step}"
    saved = checkpoint_dirs(os.path.join(output_dir, CKPT_DIR))
    if saved:
        return f"{stopped}: rerun the same command to resume from step {saved[-1][0]} (checkpoint)"
    return f"{stopped}, before the first checkpoint (--save-every): rerun starts from step 0"


def checked_options(options: dict) -> tuple[str | list[str], str, int, dict]:
    """Pops (DATA, MODEL_DIR, --nproc, --model-overrides) from a command's options after checking
    every setting; a bad one exits with a one-line error before any data is read."""
    data_dir, output_dir, nproc = options.pop("data_dir"), options.pop("output_dir"), options.pop("nproc")
    values = {**options, "nproc": nproc}
    for name, least in FIELD_MIN.items():
        if values.get(name) is not None and values[name] < least:
            _fail(f"--{name.replace('_', '-')} must be >= {least}")
    for name, allowed in FIELD_CHOICES.items():
        if name in options and options[name] not in allowed:
            _fail(f"--{name.replace('_', '-')} must be one of {', '.join(allowed)}")
    if os.path.isfile(output_dir):
        _fail(f"{output_dir} is a file: -o needs a folder (new, or an earlier run's to resume)")
    try:
        overrides = json.loads(options.pop("model_overrides"))
    except ValueError:
        overrides = None
    if not isinstance(overrides, dict):
        _fail("--model-overrides must be a JSON object, e.g. '{\"decoder_layers\": 3}'")
    return (data_dir if len(data_dir) > 1 else data_dir[0]), output_dir, nproc, overrides


def run_reporting(output_dir: str, run: Callable[[], TrainResult], errors: tuple[type, ...] = ()) -> TrainResult:
    """``run()``, with Ctrl-C and user mistakes (bad settings, data, ``errors``) as one line, no traceback."""
    try:
        return run()
    except KeyboardInterrupt as stop:
        if os.environ.get("RANK", "0") == "0":
            step = stop.step if isinstance(stop, TrainingInterrupted) else None
            typer.secho(_interrupted_message(output_dir, step), err=True)
        raise typer.Exit(130) from None
    except (ValueError, FileNotFoundError, NotADirectoryError, FileExistsError, *errors) as exc:
        _fail(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)


def print_summary(result: TrainResult, **extra: object) -> None:
    """One JSON line on rank 0: where the model is and how the run went."""
    if os.environ.get("RANK", "0") == "0":
        summary = {
            "model_dir": str(result.model_dir),
            "steps": result.steps,
            "last_loss": result.last_loss,
            "skipped": result.skipped,
            "seconds": result.seconds,
            **extra,
        }
        typer.echo(json.dumps(summary))


def train_command(**options) -> None:
    """Train a captioner (ViT encoder + transformer decoder + contrastive heads) on DATA into MODEL_DIR.

    Several processes: --nproc N here, or `torchrun --nproc_per_node 8 -m capfleet.train DATA -o MODEL_DIR`.
    Rerunning the same command resumes from the newest checkpoint.
    """
    data, output_dir, nproc, overrides = checked_options(options)
    result = run_reporting(
        output_dir, lambda: train_main(data, output_dir, nproc=nproc, model_overrides=overrides, **options)
    )
    print_summary(result)


train_command.__signature__ = inspect.Signature(_parameters())

app = typer.Typer(add_completion=False)
app.command()(train_command)


def run_app(command_app: typer.Typer, argv: list[str] | None, prog_name: str) -> None:
    """Run a one-command app; returns normally on success (its CLI caller and tests run it in-process)."""
    try:
        command_app(args=argv, prog_name=prog_name)
    except SystemExit as exit_:
        if exit_.code not in (0, None):
            raise


def main(argv: list[str] | None = None, prog_name: str = "python -m capfleet.train") -> None:
    """`capfleet train`, in-process."""
    run_app(app, argv, prog_name)


if __name__ == "__main__":
    main()
