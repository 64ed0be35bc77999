"""`capfleet eval DATA --predictions OUT` through the command line, with the built-in scorer: CLIPScore
falls when every image is paired with another image's caption."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from capfleet.cli import app
from tests.evaluate.helpers import caption_row, write_shards

runner = CliRunner()


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> tuple[Path, list[tuple[str, Path, str]]]:
    """12 synth scenes and their (key, image path, first reference caption)."""
    root = tmp_path_factory.mktemp("eval")
    result = runner.invoke(app, ["synth", "12", "-o", str(root / "scenes"), "--seed", "77", "--size", "64"])
    assert result.exit_code == 0, result.output
    refs = []
    for metadata in sorted((root / "scenes").glob("*/metadata.jsonl")):
        for line in metadata.read_text().splitlines():
            row = json.loads(line)
            refs.append((row["key"], metadata.parent / row["file_name"], row["captions"][0]))
    return root / "scenes", refs


def predictions(refs: list[tuple[str, Path, str]], texts: list[str]) -> list[dict]:
    return [caption_row(key, text, str(path)) for (key, path, _), text in zip(refs, texts, strict=True)]


def evaluate_cli(data: Path, predictions: Path, out: Path) -> dict:
    args = ["eval", str(data), "--predictions", str(predictions), "--scorer", "builtin", "--no-meteor"]
    result = runner.invoke(app, [*args, "--device", "cpu", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "CLIPScore" in result.output and "CIDEr" in result.output
    return json.loads(out.read_text())


def test_clip_score_drops_when_images_get_the_wrong_captions(scenes, tmp_path):
    data, refs = scenes
    captions = [text for _, _, text in refs]
    shifted = captions[1:] + captions[:1]  # each image gets its neighbour's caption
    assert sum(a != b for a, b in zip(captions, shifted, strict=True)) >= 10
    right = write_shards(tmp_path / "right", predictions(refs, captions))
    wrong = write_shards(tmp_path / "wrong", predictions(refs, shifted))

    good = evaluate_cli(data, right, tmp_path / "right.json")
    bad = evaluate_cli(data, wrong, tmp_path / "wrong.json")
    for results in (good, bad):
        assert results["matching"]["matched"] == 12 and results["clip"]["images"] == 12
    assert good["clip"]["CLIPScore"] > bad["clip"]["CLIPScore"] + 0.5, (good["clip"], bad["clip"])
    assert good["clip"]["RefCLIPScore"] > bad["clip"]["RefCLIPScore"]
    assert good["caption_metrics"]["BLEU-4"] > 0.99 > bad["caption_metrics"]["BLEU-4"]


def test_eval_of_a_missing_predictions_folder_is_a_one_line_error(scenes, tmp_path):
    data, _ = scenes
    result = runner.invoke(app, ["eval", str(data), "--predictions", str(tmp_path / "nope"), "--no-meteor"])
    assert result.exit_code == 2 and "error:" in result.output and "Traceback" not in result.output
