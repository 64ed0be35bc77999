"""The command line as users meet it: clear one-line errors, list, merge, and kill -9 resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from typer.testing import CliRunner

from capfleet.cli import app
from tests.image_zoo import write_noise_images
from tests.pipeline.helpers import load_with_datasets, read_rows

runner = CliRunner()


def test_unknown_model_name_is_one_clear_line(tmp_path):
    write_noise_images(tmp_path / "imgs", 1)
    result = runner.invoke(
        app, ["caption", str(tmp_path / "imgs"), "-o", str(tmp_path / "out"), "--captioner", "blipp"]
    )
    assert result.exit_code == 2
    assert "unknown captioner 'blipp'" in result.output and "Traceback" not in result.output


def test_unreachable_hub_says_to_pass_a_local_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    write_noise_images(tmp_path / "imgs", 1)
    result = runner.invoke(app, ["caption", str(tmp_path / "imgs"), "-o", str(tmp_path / "out"), "--limit", "1"])
    assert result.exit_code == 2
    assert "`hf download Salesforce/blip-image-captioning-base" in result.output and "Traceback" not in result.output


def test_missing_input_is_one_clear_line(tmp_path):
    result = runner.invoke(app, ["caption", str(tmp_path / "nope"), "-o", str(tmp_path / "out"), "--captioner", "none"])
    assert result.exit_code == 2 and "input not found" in result.output


def test_unknown_url_scheme_is_one_clear_line(tmp_path):
    result = runner.invoke(app, ["caption", "foo://bucket/x", "-o", str(tmp_path / "out"), "--captioner", "none"])
    assert result.exit_code == 2 and "Protocol not known: foo" in result.output


def test_bad_option_value_is_refused(tmp_path):
    result = runner.invoke(app, ["caption", str(tmp_path), "-o", str(tmp_path / "out"), "--decoding", "greedy"])
    assert result.exit_code == 2 and "--decoding must be one of" in result.output


def test_list_writes_a_file_list_that_caption_accepts(tmp_path):
    write_noise_images(tmp_path / "imgs", 3)
    (tmp_path / "imgs" / "img-001.txt").write_text("kept caption")
    listed = runner.invoke(app, ["list", str(tmp_path / "imgs")])
    assert listed.exit_code == 0
    lines = listed.output.strip().splitlines()
    assert len(lines) == 3 and lines[1].endswith("\tkept caption")
    (tmp_path / "dataset.txt").write_text(listed.output)
    result = runner.invoke(
        app, ["caption", str(tmp_path / "dataset.txt"), "-o", str(tmp_path / "out"), "--captioner", "none"]
    )
    assert result.exit_code == 0, result.output
    assert "captioned: 3" in result.output
    merged = runner.invoke(app, ["merge", str(tmp_path / "out")])
    assert merged.exit_code == 0 and "wrote 3 rows" in merged.output


def _caption_command(images: Path, out: Path, blip: Path) -> list[str]:
    return [
        sys.executable, "-m", "capfleet.cli", "caption", str(images), "-o", str(out), "--captioner", str(blip),
        "--scorer", "none", "--shard-size", "3", "--batch-size", "1", "--candidates", "2", "--max-new-tokens", "12",
        "--no-progress",
    ]  # fmt: skip


def test_kill_9_mid_run_then_rerun_gives_every_image_exactly_once(tmp_path, tiny_blip):
    write_noise_images(tmp_path / "imgs", 24)
    out = tmp_path / "out"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(_caption_command(tmp_path / "imgs", out, tiny_blip), env=env)
    completions = out / "_capfleet" / "completions"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(completions.glob("*.json"))) < 2 and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done_before = len(list(completions.glob("*.json")))
    assert 0 < done_before < 8, "the kill must land mid-run for this test to mean anything"
    rerun = subprocess.run(_caption_command(tmp_path / "imgs", out, tiny_blip), env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert f"({done_before} already done)" in rerun.stdout
    keys = [row["key"] for row in read_rows(out)]
    assert sorted(keys) == [f"{i:09d}" for i in range(24)]
    assert len(load_with_datasets(out)) == 24
    markers = [json.loads(p.read_text()) for p in sorted(completions.glob("*.json"))]
    assert sum(m["items"] for m in markers) == 24
