"""--engine openai end to end against a real HTTP server on 127.0.0.1 that injects faults."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

from PIL import Image
from typer.testing import CliRunner

from capfleet.cli import app
from tests.models.openai_fake_server import FakeChatServer
from tests.pipeline.helpers import read_errors, read_rows

runner = CliRunner()
SCENARIOS = ("ok", "flaky429", "down500", "slow", "fewer", "bad400", "refuses")


def _images(folder: Path, scenarios=SCENARIOS) -> Path:
    folder.mkdir()
    for index, scenario in enumerate(scenarios):
        Image.new("RGB", (48, 40), (0, 120 + index, 0)).save(folder / f"{scenario}.png")
        (folder / f"{scenario}.txt").write_text(scenario)  # the image's original caption picks the fault
    return folder


def _caption(images: Path, out: Path, api_base: str, *extra: str, env: dict | None = None):
    args = ["caption", str(images), "-o", str(out), "--engine", "openai", "--api-base", api_base]
    args += ["--captioner", "served-model", "--scorer", "none", "--prompt", "{original_text}", "--no-progress"]
    return runner.invoke(app, [*args, *extra], env=env)


def test_retries_backoff_error_records_and_repeated_requests(tmp_path):
    images = _images(tmp_path / "images")
    # A 3 s request timeout against a server that takes 60 s: a busy 2-core machine answers the
    # other requests well inside it, and the slow one can only time out.
    options = ["--candidates", "3", "--retries", "2", "--request-timeout", "3", "--image-size", "16"]
    with FakeChatServer(slow_seconds=60) as server:
        result = _caption(
            images, tmp_path / "out", server.api_base, *options, "--api-key-env", "MY_KEY", env={"MY_KEY": "sekret"}
        )
    assert result.exit_code == 0, result.output
    rows = {Path(row["source"]).stem: row for row in read_rows(tmp_path / "out")}
    errors = {Path(error["source"]).stem: error["error"] for error in read_errors(tmp_path / "out")}
    assert set(rows) == {"ok", "flaky429", "fewer", "refuses"} and set(errors) == {"down500", "slow", "bad400"}

    assert server.requests["ok"] == 1 and len(rows["ok"]["candidates"]) == 3
    assert server.requests["flaky429"] == 2 and len(rows["flaky429"]["candidates"]) == 3  # 429, then success
    assert server.requests["fewer"] == 3 and len(rows["fewer"]["candidates"]) == 3  # one choice per request
    assert "HTTP 500" in errors["down500"] and "model crashed" in errors["down500"]
    assert server.requests["down500"] == 3 and "after 3 attempts" in errors["down500"]
    assert server.requests["slow"] == 3 and "timed out" in errors["slow"]
    assert server.requests["bad400"] == 1 and "HTTP 400" in errors["bad400"]  # not retried: it cannot succeed
    # Hygiene saw only refusals: re-sampled twice, then kept with the reason.
    assert rows["refuses"]["flags"] == "refusal" and server.requests["refuses"] == 3
    assert "captioned: 4  failed: 3" in result.output

    assert server.authorizations == {"Bearer sekret"}
    for written in [*tmp_path.joinpath("out").rglob("*.json*"), *tmp_path.joinpath("out").rglob("*.json")]:
        assert "sekret" not in written.read_text()
    assert "sekret" not in result.output
    body = server.bodies[0]
    assert body["model"] == "served-model" and body["max_tokens"] == 30 and body["top_p"] == 0.9
    url = body["messages"][0]["content"][0]["image_url"]["url"]
    sent = Image.open(io.BytesIO(base64.b64decode(url.removeprefix("data:image/jpeg;base64,"))))
    assert min(sent.size) == 16 and sent.size == (19, 16)  # downscaled to --image-size, aspect kept


def test_requests_in_flight_follow_concurrency(tmp_path):
    images = _images(tmp_path / "images", scenarios=[f"ok{i}" for i in range(6)])
    with FakeChatServer(delay=1.0) as server:  # long enough that a loaded machine still overlaps them
        result = _caption(images, tmp_path / "out", server.api_base, "--concurrency", "3", "--batch-size", "6")
    assert result.exit_code == 0, result.output
    assert len(read_rows(tmp_path / "out")) == 6
    assert 2 <= server.max_in_flight <= 3
    assert len({body["seed"] for body in server.bodies}) == 6  # every image samples with its own seed
    assert server.authorizations == {None}  # no key in the environment: no Authorization header


def test_same_seed_same_requests(tmp_path):
    images = _images(tmp_path / "images", scenarios=["ok", "fewer"])
    with FakeChatServer() as server:
        _caption(images, tmp_path / "a", server.api_base, "--candidates", "2")
        _caption(images, tmp_path / "b", server.api_base, "--candidates", "2")
    assert [r["candidates"] for r in read_rows(tmp_path / "a")] == [r["candidates"] for r in read_rows(tmp_path / "b")]


def test_engine_settings_are_checked_before_anything_runs(tmp_path):
    images = _images(tmp_path / "images", scenarios=["ok"])
    missing = runner.invoke(app, ["caption", str(images), "-o", str(tmp_path / "o"), "--engine", "openai"])
    assert missing.exit_code == 2 and "--engine openai needs --api-base URL" in missing.output
    bad = _caption(images, tmp_path / "o", "ftp://example")
    assert bad.exit_code == 2 and "--api-base must be http(s)://" in bad.output
    secret = _caption(images, tmp_path / "o", "http://user:hunter2@127.0.0.1:9/v1")
    assert secret.exit_code == 2 and "must not hold credentials" in secret.output
    unknown = runner.invoke(app, ["caption", str(images), "-o", str(tmp_path / "o"), "--engine", "tgi"])
    assert unknown.exit_code == 2 and "--engine must be one of transformers, vllm, openai" in unknown.output
    assert not (tmp_path / "o").exists()
    run = tmp_path / "ok-run"
    with FakeChatServer() as server:
        assert _caption(images, run, server.api_base).exit_code == 0
    settings = json.loads((run / "_capfleet" / "run.json").read_text())["settings"]
    assert settings["engine"] == "openai" and "api_base" not in settings and "api_key_env" not in settings
