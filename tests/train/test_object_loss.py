"""The auxiliary object loss (`--object-loss-weight`): which synth colour+shape object each image token shows."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from capfleet.cli import app
from capfleet.synth import Scene
from capfleet.synth.scene import relate
from capfleet.train.objects import BACKGROUND, IGNORE, OBJECT_CLASSES, RELATION_FLAGS, object_grid
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


def test_token_targets_are_the_objects_where_they_are_drawn(scenes):
    for row in _rows(scenes):
        target = object_grid(row["scene"], 8).view(8, 8)
        shapes = Scene.from_dict(json.loads(row["scene"])).shapes
        for s in shapes:  # the patch holding an object's centre is that object's
            assert OBJECT_CLASSES[target[int(s.y * 8), int(s.x * 8)]] == f"{s.colour} {s.shape}"
        assert set(target.unique().tolist()) == {
            BACKGROUND,
            *(OBJECT_CLASSES.index(f"{s.colour} {s.shape}") for s in shapes),
        }
    for bad in (
        "",
        "not json",
        '{"shapes": [{"colour": "teal", "shape": "circle", "x": 0.5, "y": 0.5, "r": 0.1}]}',
        "[1]",
    ):
        assert (object_grid(bad, 4) == IGNORE).all() and object_grid(bad, 4).shape == (16,)


def test_object_loss_is_learnt_logged_and_saved_with_the_model(scenes, tmp_path):
    out = tmp_path / "model"
    args = ["train", str(scenes), "-o", str(out), *FAST, "--max-steps", "60", "--object-loss-weight", "1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert all("object_loss" in row for row in log)
    # below the loss of knowing only how often each class covers a token: the head reads the image
    targets = torch.cat([object_grid(row["scene"], 4) for row in _rows(scenes)])
    frequency = torch.bincount(targets, minlength=len(OBJECT_CLASSES)).float() / len(targets)
    prior = float(-(frequency * frequency.clamp(min=1e-9).log()).sum())
    assert sum(row["object_loss"] for row in log[-5:]) / 5 < 0.8 * prior < log[0]["object_loss"]
    model, _, processor = load_bundle(out)
    assert model.config.object_classes == len(OBJECT_CLASSES)
    pixels = processor(images=[Image.new("RGB", (32, 32))] * 2, return_tensors="pt")["pixel_values"]
    assert model(pixel_values=pixels, return_objects=True).object_logits.shape == (2, 16, len(OBJECT_CLASSES))


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


def test_relation_flags_say_where_each_object_stands_to_the_others(scenes):
    several = 0
    for row in _rows(scenes):
        target = object_grid(row["scene"], 8, relations=True).view(8, 8, 1 + len(RELATION_FLAGS))
        scene = Scene.from_dict(json.loads(row["scene"]))
        for s in scene.shapes:
            flags = target[int(s.y * 8), int(s.x * 8), 1:].tolist()
            for flag, direction in zip(flags, RELATION_FLAGS, strict=True):
                # the direction holds from this object to some other one, by the scene's own geometry
                others = [o for o in scene.shapes if o is not s]
                assert flag == any(direction in relate(s, o) for o in others), (row["text"], s, direction)
            several += any(flags)
        background = target[..., 0] == BACKGROUND
        assert (target[background][:, 1:] == IGNORE).all()
        assert torch.equal(target[..., 0].flatten(), object_grid(row["scene"], 8))  # the class column is unchanged
    assert several > 5
    assert (object_grid("not json", 4, relations=True) == IGNORE).all()


def test_relation_loss_is_learnt_and_resuming_with_the_other_setting_is_refused(scenes, tmp_path):
    out = tmp_path / "model"
    args = ["train", str(scenes), "-o", str(out), *FAST, "--max-steps", "40", "--object-loss-weight", "1"]
    assert runner.invoke(app, [*args, "--object-relations", "--stop-after", "20"]).exit_code == 0
    # resuming with the other setting would read the head's columns wrongly
    result = runner.invoke(app, [*args, "--no-object-relations"])
    assert result.exit_code == 2 and "object_relations" in result.output
    assert runner.invoke(app, [*args, "--object-relations"]).exit_code == 0
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert sum(row["object_loss"] for row in log[-5:]) / 5 < 0.8 * log[0]["object_loss"]
    model, _, processor = load_bundle(out)
    assert model.config.object_relations
    pixels = processor(images=[Image.new("RGB", (32, 32))], return_tensors="pt")["pixel_values"]
    shape = (1, 16, len(OBJECT_CLASSES) + len(RELATION_FLAGS))
    assert model(pixel_values=pixels, return_objects=True).object_logits.shape == shape
