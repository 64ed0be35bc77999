"""Grounded relation words (issue 24): decoding never lets the built-in model claim a relation its object map denies."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from capfleet.builtin import MODEL_DIR
from capfleet.evaluate.references import read_references
from capfleet.evaluate.scene_accuracy import scenes_of
from capfleet.modeling.configuration import CapfleetCaptionerConfig
from capfleet.modeling.model import CapfleetCaptionerModel
from capfleet.modeling.relation_grounding import FREE, RelationGrounding, layout_of, next_words
from capfleet.models.processors import load_image_processor
from capfleet.synth import generate_synthetic_dataset
from capfleet.synth.scene import COLOURS, OBJECT_CLASSES, Shape


def shape(colour: str, kind: str, x: float, y: float, size: str = "small") -> Shape:
    return Shape(kind, colour, size, x, y, 0.105 if size == "small" else 0.19, 0.0, COLOURS[colour])


# a red circle left of a blue square, a green star right under the circle (y grows downwards)
LAYOUT = {
    ("red", "circle"): shape("red", "circle", 0.2, 0.3),
    ("blue", "square"): shape("blue", "square", 0.8, 0.3),
    ("green", "star"): shape("green", "star", 0.2, 0.85),
}


def words(text: str) -> list[str]:
    return text.replace(",", " ,").split()


def test_a_relation_phrase_no_object_satisfies_is_never_started_or_finished():
    after_circle = next_words(words("a red circle"), LAYOUT)
    assert after_circle.only is None
    assert "above" not in after_circle.never and "below" in after_circle.never  # the circle stands above the star
    assert "to" not in after_circle.never  # the square stands to its right
    assert next_words(words("a red circle to the"), LAYOUT).never == {"right"}
    assert next_words(words("a blue square to the"), LAYOUT).never == {"left"}
    # the circle is above the star, but not above and to one side of anything
    assert "and" in next_words(words("a red circle above"), LAYOUT).never
    assert "and" not in next_words(words("a blue square above"), LAYOUT).never


def test_the_partner_must_stand_where_the_phrase_says():
    colours = next_words(words("a red circle to the left of a"), LAYOUT).only
    assert colours is not None and "blue" in colours and "green" not in colours and "red" not in colours
    assert next_words(words("a red circle to the left of a blue"), LAYOUT).only == {"square"}
    assert next_words(words("a green star below the"), LAYOUT).only == {"red", "blue", "small", "large"}
    assert next_words(words("a blue square above and to the right of a"), LAYOUT).only == {"green", "small", "large"}


def test_an_order_the_named_objects_do_not_stand_in_is_never_said():
    row = {key: LAYOUT[key] for key in (("red", "circle"), ("blue", "square"))}
    row[("green", "star")] = shape("green", "star", 0.5, 0.3)  # between them, on one line
    assert next_words(words("a red circle , a green star and a blue square from"), row).never == {"top"}
    assert next_words(words("a blue square , a green star and a red circle from"), row).never == {"left", "top"}


def test_words_about_objects_the_map_lacks_are_left_to_the_decoder():
    assert next_words(words("a purple triangle"), LAYOUT) == FREE
    assert next_words(words("a purple triangle to the left of a"), LAYOUT) == FREE
    assert next_words([], LAYOUT) == FREE


def test_the_processor_masks_each_row_by_its_own_image():
    names = ["[PAD]", "a", "red", "circle", "to", "the", "left", "right"]
    vocabulary = {word: index for index, word in enumerate(names)}
    mirrored = {key: shape(s.colour, s.shape, 1 - s.x, s.y) for key, s in LAYOUT.items()}
    processor = RelationGrounding([LAYOUT, mirrored], vocabulary, {"[PAD]"})
    prefix = [vocabulary[w] for w in ("a", "red", "circle", "to", "the")]
    scores = processor(torch.tensor([prefix] * 4), torch.zeros(4, len(vocabulary)))  # two rows per image
    banned = scores.isinf()
    assert banned[:2, vocabulary["right"]].all() and not banned[:2, vocabulary["left"]].any()
    assert banned[2:, vocabulary["left"]].all() and not banned[2:, vocabulary["right"]].any()
    assert banned.sum() == 4


def test_the_built_in_model_s_object_map_places_the_objects_of_unseen_scenes(tmp_path):
    generate_synthetic_dataset(40, tmp_path / "scenes", seed=777, size=64, progress=False)
    refs = read_references(tmp_path / "scenes")
    model = CapfleetCaptionerModel.from_pretrained(str(MODEL_DIR)).eval()
    processor = load_image_processor(str(MODEL_DIR))
    placed = total = 0
    for key, scene in scenes_of(refs).items():
        pixels = processor(images=Image.open(refs.rows[key].image_path).convert("RGB"), return_tensors="pt")
        with torch.no_grad():
            logits = model(pixel_values=pixels.pixel_values, return_objects=True).object_logits
        layout = layout_of(logits[0, :, : len(OBJECT_CLASSES)].softmax(-1))
        for s in scene.shapes:
            total += 1
            found = layout.get((s.colour, s.shape))
            placed += found is not None and abs(found.x - s.x) < 0.06 and abs(found.y - s.y) < 0.06
    assert placed >= 0.9 * total, (placed, total)  # the shipped model: 80 of 80


def test_an_object_s_size_is_its_share_of_the_image_on_any_token_grid():
    """A student distilled onto a 4 x 4 grid sees a large shape (about 11% of the image) in about 2 tokens."""
    probs = torch.zeros(16, len(OBJECT_CLASSES))
    probs[:, -1] = 1.0  # background
    large, small = OBJECT_CLASSES.index("red circle"), OBJECT_CLASSES.index("blue square")
    probs[[0, 1], -1], probs[[0, 1], large] = 0.0, 1.0  # 2 of 16 tokens: 12.5% of the image
    probs[15, -1], probs[15, small] = 0.4, 0.6  # 0.6 of 16 tokens: 3.75%
    layout = layout_of(probs)
    assert layout[("red", "circle")].size == "large" and layout[("blue", "square")].size == "small"
    assert layout[("red", "circle")].y == pytest.approx(0.125) and layout[("blue", "square")].x == pytest.approx(0.875)


def test_grounding_needs_an_object_head(tmp_path):
    with pytest.raises(ValueError, match="object_classes"):
        CapfleetCaptionerConfig(ground_relations=True, object_classes=0)
    assert json.loads((MODEL_DIR / "config.json").read_text())["ground_relations"] is True
