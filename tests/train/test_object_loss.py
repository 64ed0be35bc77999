"""The auxiliary object loss (`--object-loss-weight`): which synth colour+shape objects an image holds."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from capfleet.cli import app
from capfleet.synth import Scene
from capfleet.train.objects import OBJECT_CLASSES, UNKNOWN, object_targets
from capfleet.train.tokenization import load_bundle

runner = CliRunner()
FAST = ["--preset", "tiny", "--image-size", "32", "--batch-size", "16", "--num-threads", "1", "--lr", "3e-3"]
FAST += ["--warmup-steps", "3", "--log-every", "1", "--save-every", "0", "--no-progress", "--no-plot"]


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    root = tmp_path_factory.mktemp("objects") / "scenes"
    result = runner.invoke(app, ["synth", "16", "-o", str(root), "--size", "32", "--seed", "3"])
    assert result.exit_code == 0, result.output
    return root


def _rows(root) -> list[dict]:
    metas = sorted(root.glob("*/metadata.jsonl"))
    return [json.loads(line) for meta in metas for line in meta.read_text().splitlines()]


def test_targets_are_the_scene_objects_or_unknown(scenes):
    row = _rows(scenes)[0]
    target = object_targets(row["scene"])
    named = {OBJECT_CLASSES[i] for i in torch.nonzero(target).flatten().tolist()}
    assert named == {f"{s.colour} {s.shape}" for s in Scene.from_dict(json.loads(row["scene"])).shapes}
    for bad in ("", "not json", '{"shapes": [{"colour": "teal", "shape": "circle"}]}', "[1]"):
        assert (object_targets(bad) == UNKNOWN).all()


def test_object_loss_is_learnt_logged_and_saved_with_the_model(scenes, tmp_path):
    out = tmp_path / "model"
    args = ["train", str(scenes), "-o", str(out), *FAST, "--max-steps", "60", "--object-loss-weight", "1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert all("object_loss" in row for row in log)
    # below the loss of knowing only how often each object occurs: the head reads the image
    targets = torch.stack([object_targets(row["scene"]) for row in _rows(scenes)])
    frequency = targets.mean(dim=0).clamp(1e-6, 1 - 1e-6)
    prior = float(-(frequency * frequency.log() + (1 - frequency) * (1 - frequency).log()).mean())
    assert sum(row["object_loss"] for row in log[-5:]) / 5 < 0.9 * prior < log[0]["object_loss"]
    model, _, processor = load_bundle(out)
    assert model.config.object_classes == len(OBJECT_CLASSES)
    pixels = processor(images=[Image.new("RGB", (32, 32))] * 2, return_tensors="pt")["pixel_values"]
    assert model(pixel_values=pixels, return_objects=True).object_logits.shape == (2, len(OBJECT_CLASSES))


def test_object_loss_is_off_by_default(scenes, tmp_path):
    result = runner.invoke(app, ["train", str(scenes), "-o", str(tmp_path / "m"), *FAST, "--max-steps", "2"])
    assert result.exit_code == 0, result.output
    log = [json.loads(line) for line in (tmp_path / "m" / "train_log.jsonl").read_text().splitlines()]
    assert "object_loss" not in log[-1]
    assert load_bundle(tmp_path / "m")[0].config.object_classes == 0


def test_bad_object_loss_settings_are_one_line_errors(scenes, shapes_dir, tmp_path):
    result = runner.invoke(app, ["train", str(scenes), "-o", str(tmp_path / "a"), *FAST, "--object-loss-weight", "-1"])
    assert result.exit_code == 2 and "--object-loss-weight must be >= 0" in result.output
    # a dataset without scene graphs has nothing to learn objects from
    args = ["train", str(shapes_dir), "-o", str(tmp_path / "b"), *FAST, "--object-loss-weight", "1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "needs a synth dataset" in result.output and "Traceback" not in result.output


def test_resuming_a_run_without_the_object_head_with_it_is_refused(scenes, tmp_path):
    first = ["train", str(scenes), "-o", str(tmp_path / "m"), *FAST, "--max-steps", "4", "--stop-after", "2"]
    assert runner.invoke(app, first).exit_code == 0
    result = runner.invoke(app, [*first, "--object-loss-weight", "1"])
    assert result.exit_code == 2 and "trained without it" in result.output
