"""`capfleet serve` on the command line: model and setting mistakes are one-line errors."""

from __future__ import annotations

from typer.testing import CliRunner

from capfleet.cli import app

runner = CliRunner()


def test_unknown_model_is_a_one_line_error():
    result = runner.invoke(app, ["serve", "--captioner", "no-such-model", "--port", "1"])
    assert result.exit_code == 2 and "unknown captioner 'no-such-model'" in result.output
    assert "Traceback" not in result.output


def test_bad_limits_are_refused_before_loading_models():
    result = runner.invoke(app, ["serve", "--captioner", "builtin", "--max-batch", "0"])
    assert result.exit_code == 2 and "--max-batch must be >= 1" in result.output
