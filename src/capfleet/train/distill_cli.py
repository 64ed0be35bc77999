"""``capfleet distill`` and ``python -m capfleet.train.distill_cli`` (what torchrun runs).

Its options are ``capfleet train``'s (the student's training settings, built from TrainConfig)
plus DistillConfig's fields (the teacher and the weights of the distillation terms).
"""

from __future__ import annotations

import dataclasses
import inspect

import typer

from capfleet.config import ConfigError
from capfleet.models.registry import CAPTIONER_ALIASES, SCORER_ALIASES, ModelLoadError, model_names

from .__main__ import _fail, _option, _parameters, checked_options, print_summary, run_app, run_reporting
from .distill import DistillConfig, distill_main

DISTILL_HELP = {
    "teacher": f"Teacher captioner: {model_names(CAPTIONER_ALIASES)}, a hub id or a model folder "
    "(e.g. a `capfleet train` output).",
    "teacher_scorer": f"Teacher scorer: auto (the teacher's own heads for capfleet models, else clip), "
    f"{model_names(SCORER_ALIASES)}, a hub id, a folder, or none.",
    "teacher_candidates": "Captions the teacher samples per image; its scorer picks the target.",
    "teacher_decoding": "sample | beam: how the teacher writes its candidates.",
    "teacher_max_new_tokens": "Longest teacher caption, in its tokens.",
    "data_captions": "Also train on DATA's own captions beside the teacher's.",
    "kl_weight": "Weight of the token-level KL to the teacher's logits (used when the vocabularies match).",
    "kl_temperature": "Softmax temperature of the KL term.",
    "embed_weight": "Weight of matching the teacher's image and text embeddings (0: off).",
    "feature_weight": "Weight of matching the teacher encoder's image tokens (capfleet teachers; 0: off).",
    "object_weight": "Weight of learning the teacher's per-image-token object predictions (teachers with an "
    "object head, e.g. builtin; 0: off).",
}
DISTILL_MIN = {"teacher_candidates": 1, "teacher_max_new_tokens": 1, "kl_weight": 0.0, "embed_weight": 0.0}
DISTILL_MIN.update(feature_weight=0.0, object_weight=0.0)
# the student learns from the teacher's captions (and DATA's with --data-captions), never picked by hand;
# the teacher's targets take the place of the synth-only object loss
_TRAIN_ONLY = frozenset({"caption_mode", "object_loss_weight"})


def _distill_parameters() -> list[inspect.Parameter]:
    """DATA, --teacher and DistillConfig's settings, then `capfleet train`'s (the student's)."""
    teacher = inspect.Parameter(
        "teacher",
        inspect.Parameter.KEYWORD_ONLY,
        default=typer.Option(..., "--teacher", metavar="NAME", help=DISTILL_HELP["teacher"]),
        annotation=str,
    )
    settings = [_option(field, DISTILL_HELP) for field in dataclasses.fields(DistillConfig)[1:]]
    data, output, *rest = _parameters(_TRAIN_ONLY)
    output = output.replace(
        default=typer.Option(..., "-o", "--output-dir", metavar="STUDENT_DIR", help="Student model folder.")
    )
    return [data, output, teacher, *settings, *rest]


def distill_command(**options) -> None:
    """Distil a teacher captioner + scorer into a small capfleet captioner trained on DATA.

    The teacher captions DATA once (kept in STUDENT_DIR/teacher); the student learns its captions,
    its next-token distribution when the vocabularies match, and its image and text embeddings.
    Several processes: --nproc N, or `torchrun -m capfleet.train.distill_cli`. Rerunning the same
    command resumes (the teacher's pass is not redone).
    """
    names = [f.name for f in dataclasses.fields(DistillConfig)]
    config = DistillConfig(**{name: options.pop(name) for name in names})
    for name, least in DISTILL_MIN.items():
        if getattr(config, name) < least:
            _fail(f"--{name.replace('_', '-')} must be >= {least}")
    if config.teacher_decoding not in ("sample", "beam"):
        _fail("--teacher-decoding must be one of sample, beam")
    if config.kl_temperature <= 0:
        _fail("--kl-temperature must be > 0")
    data, output_dir, nproc, overrides = checked_options(options)
    result = run_reporting(
        output_dir,
        lambda: distill_main(data, output_dir, config, nproc=nproc, model_overrides=overrides, **options),
        errors=(ModelLoadError, ConfigError),
    )
    print_summary(
        result.train,
        teacher=config.teacher,
        teacher_images=result.teacher_images,
        kl=result.kl_reason,
        embeddings="on" if result.embed else "off",
        image_tokens="on" if result.features else "off",
        token_objects="on" if result.objects else "off",
    )


distill_command.__signature__ = inspect.Signature(_distill_parameters())

app = typer.Typer(add_completion=False)
app.command()(distill_command)


def main(argv: list[str] | None = None, prog_name: str = "python -m capfleet.train.distill_cli") -> None:
    """`capfleet distill`, in-process."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # one "Loading weights" bar per model load: the teacher is loaded twice
    run_app(app, argv, prog_name)


if __name__ == "__main__":
    main()
