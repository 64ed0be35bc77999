"""Help is one (typer) style for every command, explains every option and names every model alias."""

from __future__ import annotations

import dataclasses

import pytest
import typer
from typer.testing import CliRunner

from capfleet.cli import app
from capfleet.models.registry import BUILTIN, CAPTIONER_ALIASES, SCORER_ALIASES
from capfleet.train.__main__ import app as train_app
from capfleet.train.trainer import TrainConfig

runner = CliRunner()
COMMANDS = typer.main.get_command(app).commands


def _command(name: str):
    return typer.main.get_command(train_app) if name == "train" else COMMANDS[name]


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
