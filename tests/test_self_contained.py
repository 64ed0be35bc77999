"""A fresh clone runs its own tests: nothing outside the repository, no machine's paths in it."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests import tiny_models
from tests.outside_reads import CHECKOUT, OutsideReads

# Absolute paths that name one particular machine or workspace, not the project.
MACHINE_PATH = re.compile(r"(?<![\w.~-])(/wor[k]/|/home/\w+/|/Users/\w+/|/tmp/bash_job[s]|/root/\.pyen[v])")


def _tracked_text_files():
    names = (
        subprocess.run(["git", "ls-files", "-z"], cwd=CHECKOUT, capture_output=True, check=True)
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, names):
        path = CHECKOUT / name
        if path.suffix in {".safetensors", ".png", ".jpg", ".onnx"} or not path.is_file():
            continue
        try:
            yield name, path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue


def test_no_machine_paths_in_the_repository():
    if not (CHECKOUT / ".git").exists():
        pytest.skip("not a git checkout")
    here = re.escape(str(CHECKOUT))
    found = [
        f"{name}: {match.group(0)}"
        for name, text in _tracked_text_files()
        for match in [MACHINE_PATH.search(text) or re.search(here, text)]
        if match
    ]
    assert not found, found


def test_machine_path_pattern_catches_workspace_paths():
    workspace = "/" + "work/"  # split, so that this file does not hold the paths it forbids
    assert MACHINE_PATH.search(f"see {workspace}shared/models for configs")
    assert MACHINE_PATH.search("python at /root/." + "pyenv/versions/3.11")
    assert not MACHINE_PATH.search("docker run -v $HOME/.config:/root/.config:ro")
    assert not MACHINE_PATH.search("tests/fixtures/models/clip")


def test_model_files_live_in_the_repository(monkeypatch):
    monkeypatch.delenv("CAPFLEET_SHARED_MODELS", raising=False)
    import importlib

    fresh = importlib.reload(tiny_models)
    try:
        assert fresh.SHARED_MODELS == CHECKOUT / "tests" / "fixtures" / "models"
        for folder in (fresh.BLIP_SRC, fresh.CLIP_SRC, fresh.VIT_GPT2_SRC):
            assert (folder / "config.json").is_file()
        readme = (fresh.SHARED_MODELS / "README.md").read_text()
        for license_name in ("BSD-3-Clause", "MIT", "Apache-2.0"):
            assert license_name in readme
    finally:
        importlib.reload(tiny_models)


def test_a_read_beside_the_checkout_is_caught(tmp_path):
    clone, shared = tmp_path / "clone", tmp_path / "shared" / "models"
    (clone / "tests").mkdir(parents=True)
    shared.mkdir(parents=True)
    (shared / "config.json").write_text("{}")
    (clone / "tests" / "own.json").write_text("{}")
    reads = OutsideReads(clone)
    sys.addaudithook(reads.audit)  # hooks cannot be removed; this one only records into `reads`
    (clone / "tests" / "own.json").read_text()
    assert reads.take() == []
    (shared / "config.json").read_text()
    assert reads.take() == [str(shared / "config.json")]
    list((tmp_path / "shared").iterdir())
    assert reads.take() == [str(tmp_path / "shared")]
