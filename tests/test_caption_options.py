"""`capfleet caption`'s options are RunConfig's fields (issue 23): one default, one help text, the
plugins' own options listed in their --help panels, and unknown plugin names refused in one line."""

from __future__ import annotations

import dataclasses

import pytest
import typer
from typer.testing import CliRunner

from capfleet import plugins
from capfleet.caption_cli import CLI_DEFAULTS
from capfleet.cli import app
from capfleet.config import RunConfig
from tests.image_zoo import write_noise_images

runner = CliRunner()
PARAMS = {param.name: param for param in typer.main.get_command(app).commands["caption"].params}
SETTINGS = [field for field in dataclasses.fields(RunConfig) if field.metadata.get("cli", True)]


@pytest.mark.parametrize("field", SETTINGS, ids=[field.name for field in SETTINGS])
def test_every_setting_is_an_option_with_the_fields_default_and_help(field):
    param = PARAMS[field.name]
    assert param.help == field.metadata["help"]
    if field.name not in CLI_DEFAULTS:
        assert param.default == field.default


@pytest.mark.parametrize("kind", ["engine", "filter"])
def test_each_plugins_options_are_run_settings(kind):
    for module in plugins.modules(kind):
        assert issubclass(RunConfig, module.Options), module.__name__
        for field in dataclasses.fields(module.Options):
            assert field.name in PARAMS, f"{module.NAME}: --{field.name} is no caption option"


def test_help_groups_the_options_in_panels():
    result = runner.invoke(app, ["caption", "--help"], prog_name="capfleet", terminal_width=160)
    assert result.exit_code == 0, result.output
    panels = ["Models", "Captioning", "Filters", "Output", "Runners", "Engine: openai", "Engine: vllm"]
    at = [result.output.index(f"─ {panel} ─") for panel in panels]
    assert at == sorted(at)
    filters = result.output[at[2] : at[3]]
    assert all(flag in filters for flag in ("--min-side", "--watermark-model", "--nsfw-threshold", "--dedup"))
    assert "--tensor-parallel-size" in result.output[at[-1] :]


def test_an_unknown_engine_is_refused_in_one_line(tmp_path):
    write_noise_images(tmp_path / "imgs", 1)
    out = tmp_path / "out"
    result = runner.invoke(app, ["caption", str(tmp_path / "imgs"), "-o", str(out), "--engine", "onnx"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "--engine must be one of transformers, vllm, openai" in result.output
    assert not out.exists()
