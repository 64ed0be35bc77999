"""The README's commands stay true: every `capfleet` option it names exists, and the lines
that run project scripts or the linter use the venv's tools (issue 8)."""

from __future__ import annotations

import re
import shlex
from importlib.metadata import version
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from capfleet.cli import app
from capfleet.train.__main__ import app as train_app
from capfleet.train.distill_cli import app as distill_app

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
runner = CliRunner()


def _bash_lines() -> list[str]:
    """Commands in ```bash blocks, `\\` continuations joined."""
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", README, flags=re.S):
        lines += [line.strip() for line in block.replace("\\\n", " ").splitlines() if line.strip()]
    return lines


def _capfleet_commands() -> list[tuple[str, list[str]]]:
    """(subcommand, option names) for every capfleet invocation, `&&` chains split; torchrun runs `train`."""
    commands = []
    for line in _bash_lines():
        for part in line.split("&&"):
            words = shlex.split(part, comments=True)
            for index, word in enumerate(words):
                if word.endswith("capfleet") and index + 1 < len(words) and not words[index + 1].startswith("-"):
                    commands.append((words[index + 1], words[index + 2 :]))
                elif word == "capfleet.train" and index > 0 and words[index - 1] == "-m":
                    commands.append(("train", words[index + 1 :]))
    return [(name, [w for w in rest if w.startswith("--")]) for name, rest in commands]


def _options(subcommand: str) -> set[str]:
    if subcommand in ("train", "distill"):
        command = typer.main.get_command(train_app if subcommand == "train" else distill_app)
    else:
        command = typer.main.get_command(app).commands[subcommand]
    return {opt for param in command.params for opt in [*param.opts, *param.secondary_opts]}


COMMANDS = _capfleet_commands()


def test_the_readme_has_capfleet_commands_to_check():
    assert {name for name, _ in COMMANDS} >= {"synth", "caption", "train", "eval"}


@pytest.mark.parametrize(("subcommand", "flags"), COMMANDS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(COMMANDS)])
def test_every_option_the_readme_names_exists(subcommand, flags):
    beam = subcommand == "caption" and "--runner" in flags
    known = _options(subcommand)
    # With --runner beam, --name=value options are Beam's own (passed through to PipelineOptions).
    missing = [f for f in flags if f.split("=", 1)[0] not in known and not (beam and "=" in f)]
    assert not missing, f"capfleet {subcommand} has no {missing}"
    assert runner.invoke(app, [subcommand, "--help"]).exit_code == 0


def test_the_caption_option_table_matches_caption_help():
    table = re.findall(r"^\| `(--[a-z-]+)[^`]*` \|", README, flags=re.M)
    assert len(table) >= 15
    assert set(table) <= _options("caption"), set(table) - _options("caption")


def test_scripts_and_linter_run_with_the_venv_tools():
    for line in _bash_lines():
        for part in line.split("&&"):
            words = shlex.split(part, comments=True)
            if words and words[0] in ("ruff", "python", "pytest"):
                pytest.fail(f"README runs `{words[0]}` from PATH, not from .venv/bin: {line}")
            for index, word in enumerate(words):
                if word.startswith(("benchmarks/", "scripts/")) and word.endswith(".py"):
                    assert index > 0 and words[index - 1] == ".venv/bin/python", line
    for interpreter in re.findall(r"`(\S*python3?) (?:benchmarks|scripts)/", README):
        assert interpreter == ".venv/bin/python", f"README runs a script with `{interpreter}`"


def _extras() -> dict[str, list[str]]:
    """pyproject.toml's optional dependencies."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]


def test_ruff_is_pinned_to_the_version_that_formats_this_tree():
    dev = _extras()["dev"]
    pins = [spec for spec in dev if spec.startswith("ruff")]
    assert pins == [f"ruff=={version('ruff')}"]


def test_the_set_up_command_installs_what_ci_tests_with():
    """A contributor's first command gets every extra the test suite needs (Ray's tests start a real cluster)."""
    extras = re.compile(r'-e "\.\[([\w,]+)\]"')
    set_up = extras.search(README).group(1).split(",")  # the first install line: Quick start
    ci = extras.search((ROOT / ".ci" / "run").read_text()).group(1).split(",")
    assert set_up == ci and "ray" in ci and set(ci) <= set(_extras())
