"""--prompt templates: per-image prompts from the original caption and the image's json."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image
from typer.testing import CliRunner

from capfleet.cli import app
from capfleet.config import RunConfig
from capfleet.runners.lifecycle import run_caption
from tests.pipeline.helpers import read_errors, read_rows

runner = CliRunner()


class EchoCaptioner:
    """Answers with the prompt it was given, and remembers how it was called."""

    name = "tests/echo"
    accepts_prompt = True
    per_image_prompts = False

    def __init__(self):
        self.calls: list[tuple[int, str | None]] = []

    def input_size(self) -> int:
        return 16

    def encode(self, images):
        return None

    def generate(self, images, num_candidates, prompt=None, seed=None, options=None, encoding=None):
        self.calls.append((len(images), prompt))
        return [[prompt or "no prompt"] for _ in images]


def _inputs(folder: Path) -> Path:
    folder.mkdir()
    for name in ("a", "b", "c"):
        Image.new("RGB", (20, 20), (10, 200, 30)).save(folder / f"{name}.png")
    (folder / "a.txt").write_text("a green square")
    (folder / "a.json").write_text(json.dumps({"photographer": "Ann", "year": 2021, "tags": ["x"]}))
    rows = [
        {"file_name": "b.png", "text": "a green tile", "photographer": "Bo"},
        {"file_name": "c.png", "text": "no photographer here"},
    ]
    (folder / "metadata.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return folder


def _run(tmp_path: Path, prompt: str, captioner=None):
    captioner = captioner or EchoCaptioner()
    config = RunConfig(
        [str(_inputs(tmp_path / "in"))], str(tmp_path / "out"), captioner="tests/echo", scorer="none", prompt=prompt
    )
    config.progress = False
    return run_caption(config, models=(captioner, None)), captioner


def _texts(out: Path) -> dict[str, str]:
    return {Path(row["source"]).stem: row["text"] for row in read_rows(out)}


def test_prompt_fields_come_from_the_caption_and_the_json(tmp_path):
    summary, _ = _run(tmp_path, "Alt text: {original_text}. {{key}} is {key}; by {photographer}, {year}")
    rows = _texts(tmp_path / "out")
    assert rows == {"a": "Alt text: a green square. {key} is 000000000; by Ann, 2021"}
    assert summary.stats.failed == 2  # b has no year, c no photographer


def test_every_image_has_original_text_key_and_source(tmp_path):
    _run(tmp_path, "Alt text: {original_text} ({key}) from {source}")
    folder = tmp_path / "in"
    assert _texts(tmp_path / "out") == {
        "a": f"Alt text: a green square (000000000) from {folder / 'a.png'}",
        "b": f"Alt text: a green tile (000000001) from {folder / 'b.png'}",
        "c": f"Alt text: no photographer here (000000002) from {folder / 'c.png'}",
    }


def test_an_image_missing_a_field_becomes_an_error_record(tmp_path):
    summary, captioner = _run(tmp_path, "Describe this photo by {photographer}. Alt text: {original_text}")
    rows = _texts(tmp_path / "out")
    assert rows == {
        "a": "Describe this photo by Ann. Alt text: a green square",
        "b": "Describe this photo by Bo. Alt text: a green tile",
    }
    (error,) = read_errors(tmp_path / "out")
    assert error["source"].endswith("c.png") and "prompt field {photographer}" in error["error"]
    assert summary.stats.failed == 1 and summary.stats.captioned == 2
    # A captioner without per-image prompts is called once per distinct prompt.
    assert sorted(captioner.calls) == [(1, "Describe this photo by Ann. Alt text: a green square"),
                                       (1, "Describe this photo by Bo. Alt text: a green tile")]  # fmt: skip


def test_unknown_field_stops_the_run_with_one_line(tmp_path):
    out = tmp_path / "out"
    args = ["caption", str(_inputs(tmp_path / "in")), "-o", str(out), "--captioner", "builtin", "--scorer", "none"]
    result = runner.invoke(app, [*args, "--prompt", "Describe {camera}"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "unknown prompt field {camera}" in result.output and "photographer" in result.output
    assert not out.exists()  # nothing written
    result = runner.invoke(app, [*args, "--prompt", "Describe {"])
    assert result.exit_code == 2 and "--prompt is not a valid template" in result.output
    result = runner.invoke(app, [*args, "--prompt", "Describe {0}"])
    assert result.exit_code == 2 and "is not a field name" in result.output


def test_prompt_file(tmp_path, tiny_blip):
    images = _inputs(tmp_path / "in")
    prompt_file = tmp_path / "prompt.txt"
    prompt_file.write_text("a picture of {original_text}\n")
    out = tmp_path / "out"
    base = ["caption", str(images), "-o", str(out), "--captioner", str(tiny_blip), "--scorer", "none"]
    both = runner.invoke(app, [*base, "--prompt", "x", "--prompt-file", str(prompt_file)])
    assert both.exit_code == 2 and "not both" in both.output
    missing = runner.invoke(app, [*base, "--prompt-file", str(tmp_path / "nope.txt")])
    assert missing.exit_code == 2 and "cannot read --prompt-file" in missing.output
    result = runner.invoke(app, [*base, "--prompt-file", str(prompt_file), "--max-new-tokens", "3", "--no-progress"])
    assert result.exit_code == 0, result.output
    rows = {Path(row["source"]).stem: row["text"] for row in read_rows(out)}
    # BLIP continues its prefix: each image's caption starts with its own prompt.
    assert rows["a"].startswith("a picture of a green square") and rows["b"].startswith("a picture of a green tile")
    run = json.loads((out / "_capfleet" / "run.json").read_text())
    assert run["settings"]["prompt"] == "a picture of {original_text}"
