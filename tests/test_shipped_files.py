"""No command in the README, docs or scripts overwrites the files the package ships."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "build_builtin_model.py"
SHIPPED = ROOT / "src" / "capfleet" / "builtin" / "model"


def _build(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def _shipped_digest() -> dict[str, int]:
    return {path.name: path.stat().st_mtime_ns for path in SHIPPED.iterdir()}


def test_the_build_script_needs_an_output():
    before = _shipped_digest()
    result = _build("--steps", "1")
    assert result.returncode != 0 and "--output" in result.stderr
    assert _shipped_digest() == before


def test_the_build_script_refuses_the_package_without_replace_shipped(tmp_path):
    before = _shipped_digest()
    for output in (SHIPPED, SHIPPED.parent, ROOT / "src" / "capfleet" / "new-model"):
        result = _build("--output", str(output), "--work", str(tmp_path / "work"), "--steps", "1")
        assert result.returncode != 0 and "--replace-shipped" in result.stderr, result.stderr
    assert not (tmp_path / "work").exists()  # refused before drawing a single scene
    assert not (ROOT / "src" / "capfleet" / "new-model").exists()
    assert _shipped_digest() == before


def test_the_build_script_refuses_a_folder_of_other_files(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    result = _build("--output", str(tmp_path / "out"), "--work", str(tmp_path / "work"), "--steps", "1")
    assert result.returncode != 0 and "notes.txt" in result.stderr
    assert (tmp_path / "out" / "notes.txt").read_text() == "mine"
    assert not (tmp_path / "work").exists()


def test_every_documented_build_command_names_its_output():
    documents = [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "benchmarks").glob("*")]
    commands = []
    for document in documents:
        text = document.read_text(encoding="utf-8").replace("\\\n", " ")
        commands += [line for line in text.splitlines() if re.search(r"python3? \S*build_builtin_model\.py", line)]
    assert commands, "the README documents how the built-in model and the distillation teacher are rebuilt"
    for command in commands:
        output = re.search(r"--output (\S+)", command)
        assert output, f"no --output: {command.strip()}"
        if "builtin/model" in output.group(1):
            assert "--replace-shipped" in command, command.strip()
