"""What a new user meets on a first run (issue 8): hub failures, the built-in model's own scorer,
--keep-names and --threads, all through the CLI."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

from capfleet.cli import app
from capfleet.cpus import available_cpus
from tests.image_zoo import write_noise_images
from tests.pipeline.helpers import load_with_datasets, read_rows

runner = CliRunner()
FAST = ["--candidates", "2", "--max-new-tokens", "5", "--no-progress"]


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _offline_env(tmp_path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_ENDPOINT")}
    return {**env, "HF_HOME": str(tmp_path / "hf-home"), "OMP_NUM_THREADS": "1", **extra}


@pytest.mark.parametrize("setting", ["closed-port", "offline-set"])
def test_an_unusable_hub_is_one_line_with_advice_that_works(tmp_path, setting):
    write_noise_images(tmp_path / "imgs", 1)
    extra = (
        {"HF_ENDPOINT": f"http://127.0.0.1:{_closed_port()}"} if setting == "closed-port" else {"HF_HUB_OFFLINE": "1"}
    )
    command = [sys.executable, "-m", "capfleet.cli", "caption", str(tmp_path / "imgs"), "-o", str(tmp_path / "out")]
    done = subprocess.run(command, env=_offline_env(tmp_path, **extra), capture_output=True, text=True, timeout=120)
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, lines  # no retry warnings: the old client printed 27 lines
    assert lines[0].startswith("error: captioner 'Salesforce/blip-image-captioning-base' is not in the local cache")
    assert "`hf download Salesforce/blip-image-captioning-base --local-dir DIR`" in lines[0]
    assert "huggingface-cli" not in lines[0] and "HF_HUB_OFFLINE=1" not in lines[0]
    assert not (tmp_path / "out").exists()


def _cache_as_hub_model(model_dir, hf_home, repo_id: str) -> None:
    """Lay a local model out as the hub client's cache would after `hf download`."""
    repo = hf_home / "hub" / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(model_dir, repo / "snapshots" / ("0" * 40))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)


def test_a_cached_hub_model_still_loads_when_the_hub_is_unreachable(tmp_path, tiny_clip):
    write_noise_images(tmp_path / "imgs", 2)
    _cache_as_hub_model(tiny_clip, tmp_path / "hf-home", "someone/tiny-clip")
    env = _offline_env(tmp_path, HF_ENDPOINT=f"http://127.0.0.1:{_closed_port()}")
    command = [sys.executable, "-m", "capfleet.cli", "caption", str(tmp_path / "imgs"), "-o", str(tmp_path / "out")]
    command += ["--captioner", "builtin", "--scorer", "someone/tiny-clip", *FAST]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Retrying" not in done.stderr
    assert [row["scorer"] for row in read_rows(tmp_path / "out")] == ["someone/tiny-clip"] * 2


def test_the_builtin_captioner_brings_its_own_scorer(tmp_path):
    write_noise_images(tmp_path / "imgs", 2)
    result = runner.invoke(
        app, ["caption", str(tmp_path / "imgs"), "-o", str(tmp_path / "out"), "--captioner", "builtin", *FAST]
    )
    assert result.exit_code == 0, result.output
    rows = read_rows(tmp_path / "out")
    assert len(rows) == 2 and all(len(row["scores"]) == len(row["candidates"]) >= 1 for row in rows)
    assert all(row["scorer"] == row["captioner"] for row in rows)  # the built-in model's folder, not CLIP
    settings = json.loads((tmp_path / "out" / "_capfleet" / "run.json").read_text())["settings"]
    assert settings["scorer"] == "builtin" and "keep_names" not in settings  # fingerprint as before issue 8


def test_keep_names_names_files_after_their_source_uniquely_and_resumes(tmp_path):
    for folder in ("a", "b"):
        write_noise_images(tmp_path / "in" / folder, 1)[0].rename(tmp_path / "in" / folder / "photo.jpg")
    write_noise_images(tmp_path / "in" / "c", 1)[0].rename(tmp_path / "in" / "c" / "my holiday.jpg")
    args = ["caption", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--captioner", "none", "--shard-size", "2"]
    result = runner.invoke(app, [*args, "--keep-names"])
    assert result.exit_code == 0, result.output
    names = sorted(row["file_name"] for row in read_rows(tmp_path / "out"))
    assert names == ["my holiday_000000002.jpg", "photo_000000000.jpg", "photo_000000001.jpg"]
    assert sorted(p.name for p in (tmp_path / "out").glob("0*/*.jpg")) == names
    assert len(load_with_datasets(tmp_path / "out")) == 3
    again = runner.invoke(app, [*args, "--keep-names"])
    assert again.exit_code == 0 and "(2 already done)" in again.output
    other = runner.invoke(app, args)
    assert other.exit_code == 2 and "keep_names" in other.output


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("threads", [None, 1])
def test_threads_sets_torch_threads_and_defaults_to_the_cpus_we_may_use(tmp_path, restore_threads, threads):
    write_noise_images(tmp_path / "imgs", 1)
    torch.set_num_threads(7)
    option = [] if threads is None else ["--threads", str(threads)]
    args = ["caption", str(tmp_path / "imgs"), "-o", str(tmp_path / "out"), "--captioner", "builtin", *FAST, *option]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert torch.get_num_threads() == (threads or available_cpus())
