"""Help is one (typer) style for every command, explains every option and names every model alias."""

from __future__ import annotations

import dataclasses

import pytest
import typer
from typer.testing import CliRunner

from capfleet.cli import app
from capfleet.models.registry import BUILTIN, CAPTIONER_ALIASES, SCORER_ALIASES
from capfleet.train.__main__ import app as train_app
from capfleet.train.distill import DistillConfig
from capfleet.train.distill_cli import app as distill_app
from capfleet.train.trainer import TrainConfig

runner = CliRunner()
COMMANDS = typer.main.get_command(app).commands


def _command(name: str):
    """`train` and `distill` parse their options in their own apps (torch is imported only when run)."""
    own_app = {"train": train_app, "distill": distill_app}.get(name)
    return typer.main.get_command(own_app) if own_app else COMMANDS[name]


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_option_and_argument_is_explained(name):
    unexplained = [param.name for param in _command(name).params if not (getattr(param, "help", None) or "").strip()]
    assert not unexplained, f"capfleet {name}: no help for {unexplained}"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_is_typer_style_with_named_metavars(name):
    result = runner.invoke(app, [name, "--help"], prog_name="capfleet")
    assert result.exit_code == 0, result.output
    assert f"Usage: capfleet {name} [OPTIONS]" in result.output
    assert "usage: python -m" not in result.output  # argparse
    lowercase_metavars = [p.name for p in _command(name).params if f"{{{p.name}}}" in result.output]
    assert not lowercase_metavars


def test_caption_help_names_every_alias_from_the_registry():
    params = {param.name: param.help for param in COMMANDS["caption"].params}
    assert all(alias in params["captioner"] for alias in [BUILTIN, *CAPTIONER_ALIASES])
    assert all(alias in params["scorer"] for alias in ["auto", BUILTIN, *SCORER_ALIASES])


def test_train_help_lists_every_training_setting():
    result = runner.invoke(app, ["train", "--help"], prog_name="capfleet")
    assert result.exit_code == 0 and "Usage: capfleet train" in result.output
    flags = {opt for param in _command("train").params for opt in param.opts}
    fields = {f.name for f in dataclasses.fields(TrainConfig)} - {"data_dir", "output_dir"}
    assert {"--" + name.replace("_", "-") for name in fields} <= flags
    for flag in ("--preset", "--caption-mode", "--stop-after"):
        assert flag in result.output


def test_distill_help_lists_the_teacher_settings_and_the_students_training_settings():
    result = runner.invoke(app, ["distill", "--help"], prog_name="capfleet")
    assert result.exit_code == 0 and "Usage: capfleet distill" in result.output
    flags = {opt for param in _command("distill").params for opt in param.opts}
    distill = {f.name for f in dataclasses.fields(DistillConfig)}
    train_only = {"caption_mode", "object_loss_weight"}
    training = {f.name for f in dataclasses.fields(TrainConfig)} - {"data_dir", "output_dir"} - train_only
    assert {"--" + name.replace("_", "-") for name in distill | training} <= flags
    # the teacher's captions are the targets (--data-captions adds DATA's) and replace the object loss
    assert not {"--caption-mode", "--object-loss-weight"} & flags
