"""The offline loop a user runs: synth -> train -> caption with the trained model -> eval."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from capfleet.cli import app
from tests.pipeline.helpers import read_rows

runner = CliRunner()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("loop")
    result = runner.invoke(app, ["synth", "24", "-o", str(root / "scenes"), "--size", "32", "--shard-size", "12"])
    assert result.exit_code == 0, result.output
    args = ["train", str(root / "scenes"), "-o", str(root / "model"), "--preset", "tiny", "--image-size", "32"]
    args += ["--max-steps", "4", "--batch-size", "8", "--num-threads", "1", "--no-progress", "--no-plot"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return root


def test_a_trained_model_captions_and_scores_through_from_pretrained(trained):
    model = str(trained / "model")
    args = ["caption", str(trained / "scenes"), "-o", str(trained / "captions"), "--captioner", model]
    args += ["--scorer", model, "--candidates", "3", "--max-new-tokens", "6", "--no-progress"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = read_rows(trained / "captions")
    assert len(rows) == 24
    assert all(row["text"] == row["candidates"][row["scores"].index(max(row["scores"]))] for row in rows)


def test_eval_reports_caption_metrics_for_predictions_and_for_a_model(trained, tmp_path):
    out = tmp_path / "eval.json"
    result = runner.invoke(
        app, ["eval", str(trained / "scenes"), "--model", str(trained / "model"), "--no-meteor", "--json", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "CIDEr" in result.output
    results = json.loads(out.read_text())
    assert results["matching"]["matched"] == 24  # every scene captioned and matched back by image path
    assert set(results["caption_metrics"]) >= {"BLEU-1", "BLEU-4", "ROUGE-L", "CIDEr"}
    assert 0 <= results["caption_metrics"]["BLEU-1"] <= 1
    assert "object acc." in result.output and results["scene_accuracy"]["images"] == 24
    assert 0 <= results["scene_accuracy"]["object_accuracy"] <= 1
    result = runner.invoke(app, ["eval", str(trained / "scenes")])
    assert result.exit_code == 2 and "exactly one of" in result.output


def test_a_trained_model_is_its_own_default_scorer(trained, tmp_path):
    model = str(trained / "model")
    args = ["caption", str(trained / "scenes"), "-o", str(tmp_path / "out"), "--captioner", model, "--limit", "4"]
    result = runner.invoke(app, [*args, "--candidates", "2", "--max-new-tokens", "6", "--no-progress"])
    assert result.exit_code == 0, result.output
    rows = read_rows(tmp_path / "out")
    assert len(rows) == 4 and all(row["scorer"] == model for row in rows)  # not CLIP from the hub
    assert all(len(row["scores"]) == len(row["candidates"]) for row in rows)
