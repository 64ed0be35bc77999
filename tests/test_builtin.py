"""The shipped built-in model works offline and is right about the scenes it was trained for."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from capfleet.builtin import MODEL_DIR
from capfleet.cli import app
from capfleet.evaluate import caption_scores, most_frequent_caption_baseline, read_references
from capfleet.evaluate.scene_accuracy import scenes_of
from capfleet.synth.grounding import objects_right
from tests.foreign_shapes import write_drawings
from tests.pipeline.helpers import read_rows

runner = CliRunner()


def caption_builtin(images: Path, out: Path, *options: str) -> dict[str, dict]:
    """{image file name: output row} of `capfleet caption --captioner builtin`."""
    args = ["caption", str(images), "-o", str(out), "--captioner", "builtin", "--no-progress", *options]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return {Path(row["source"]).name: row for row in read_rows(out)}


def test_builtin_is_a_small_hf_bundle():
    names = {path.name for path in MODEL_DIR.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "preprocessor_config.json"} <= names
    assert (MODEL_DIR / "model.safetensors").stat().st_size < 20_000_000


def test_builtin_names_the_objects_of_unseen_scenes(tmp_path):
    assert runner.invoke(app, ["synth", "40", "-o", str(tmp_path / "scenes"), "--seed", "4242"]).exit_code == 0
    rows = caption_builtin(tmp_path / "scenes", tmp_path / "out", "--scorer", "builtin", "--candidates", "3")
    assert len(rows) == 40 and all(row["scores"] and row["original_text"] for row in rows.values())
    refs = read_references(tmp_path / "scenes")
    scenes = scenes_of(refs)
    predictions = {key: rows[ref.image_path.name]["text"] for key, ref in refs.rows.items()}
    wrong = [text for key, text in predictions.items() if not objects_right(text, scenes[key])]
    # this model: 40 of 40 (the previous one: 4); benchmarks/bench_builtin.py measures it on 500 scenes
    assert len(predictions) - len(wrong) >= 36, wrong
    references = refs.captions()
    model = caption_scores(references, predictions, tokenizer="simple", meteor=False)["CIDEr"]
    baseline = caption_scores(references, most_frequent_caption_baseline(references), tokenizer="simple", meteor=False)
    assert model > 3 * baseline["CIDEr"] and model > 1.2, (model, baseline["CIDEr"])


def test_builtin_names_shapes_drawn_by_another_program(tmp_path):
    """Plain PIL drawings (tests/foreign_shapes.py): other colours, edges and star proportions than synth's."""
    truth = write_drawings(tmp_path / "drawn")
    beam = ("--scorer", "none", "--decoding", "beam", "--candidates", "1")
    rows = caption_builtin(tmp_path / "drawn", tmp_path / "out", *beam)
    wrong = {name: rows[name]["text"] for name, scene in truth.items() if not objects_right(rows[name]["text"], scene)}
    assert len(truth) - len(wrong) >= 12, wrong  # this model: 16 of 16 (the previous ones: 4, then 0)


@pytest.mark.parametrize(
    "ranking", [("--model-scorer", "builtin", "--candidates", "5", "--decoding", "sample"), ("--decoding", "beam")]
)
def test_builtin_gets_the_spatial_relations_of_unseen_scenes_right(tmp_path, ranking):
    """`capfleet eval` on held-out scenes: captions saying left/right/above/below say it of the right shapes."""
    assert runner.invoke(app, ["synth", "60", "-o", str(tmp_path / "scenes"), "--seed", "2424"]).exit_code == 0
    args = ["eval", str(tmp_path / "scenes"), "--model", "builtin", *ranking, "--no-meteor", "--json"]
    result = runner.invoke(app, [*args, str(tmp_path / "eval.json")])
    assert result.exit_code == 0, result.output
    accuracy = json.loads((tmp_path / "eval.json").read_text())["scene_accuracy"]
    assert accuracy["captions_with_relations"] >= 20, accuracy
    # the model before issue 24: 7 of 26 ranked, 6 of 21 beam; its decoder alone (ground_relations off): 16 of 22
    # ranked, 25 of 36 beam; with its relation words grounded in its object map: 22 of 22 ranked, 30 of 32 beam
    # (500 scenes, benchmarks/bench_builtin.py: 99.5% / 98.8%), so a model that loses either part fails here
    assert accuracy["relation_accuracy"] >= 0.85, accuracy
