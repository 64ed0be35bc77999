"""The shipped built-in model works offline and describes the scenes it was trained for."""

from __future__ import annotations

from typer.testing import CliRunner

from capfleet.builtin import MODEL_DIR
from capfleet.cli import app
from capfleet.evaluate import caption_scores, most_frequent_caption_baseline, read_predictions, read_references
from tests.pipeline.helpers import read_rows

runner = CliRunner()


def test_builtin_is_a_small_hf_bundle():
    names = {path.name for path in MODEL_DIR.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "preprocessor_config.json"} <= names
    assert (MODEL_DIR / "model.safetensors").stat().st_size < 20_000_000


def test_builtin_captions_unseen_scenes_far_better_than_a_constant(tmp_path):
    assert runner.invoke(app, ["synth", "40", "-o", str(tmp_path / "scenes"), "--seed", "4242"]).exit_code == 0
    args = ["caption", str(tmp_path / "scenes"), "-o", str(tmp_path / "out"), "--captioner", "builtin"]
    result = runner.invoke(app, [*args, "--scorer", "builtin", "--candidates", "3", "--no-progress"])
    assert result.exit_code == 0, result.output
    rows = read_rows(tmp_path / "out")
    assert len(rows) == 40 and all(row["scores"] and row["original_text"] for row in rows)
    refs = read_references(tmp_path / "scenes")
    references = refs.captions()
    by_name = {ref.image_path.name: key for key, ref in refs.rows.items()}
    predictions = {
        by_name[p.source.rsplit("/", 1)[1]]: p.text for p in read_predictions(tmp_path / "out").rows.values()
    }
    model = caption_scores(references, predictions, tokenizer="simple", meteor=False)["CIDEr"]
    baseline = caption_scores(references, most_frequent_caption_baseline(references), tokenizer="simple", meteor=False)
    assert model > 3 * baseline["CIDEr"] and model > 1.2, (model, baseline["CIDEr"])
