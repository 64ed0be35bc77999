"""Reading captions back into objects and spatial claims, checked against the scene graph."""

from collections import Counter

import numpy as np
import pytest

from capfleet.synth import Background, Scene, Shape, describe, sample_scene
from capfleet.synth.grounding import OBJECT_ERRORS, object_error, objects_right, read_caption, relations_right

BG = Background("solid", "light", ((240, 240, 240),), 0.0)


def scene(*shapes: tuple[str, str, float, float]) -> Scene:
    """Shapes as (colour, shape, x, y), small and well apart; relations are not needed by the checks."""
    return Scene(tuple(Shape(s, c, "small", x, y, 0.1, 0.0, (0, 0, 0)) for c, s, x, y in shapes), (), BG)


RED_ABOVE_BLUE = scene(("red", "circle", 0.5, 0.2), ("blue", "square", 0.5, 0.8))
THREE_IN_A_ROW = scene(("red", "circle", 0.15, 0.5), ("blue", "square", 0.5, 0.5), ("green", "star", 0.85, 0.5))


def test_reading_objects_and_claims():
    reading = read_caption("A large red circle above and to the left of a small blue square on a light background")
    assert reading.objects == Counter({("red", "circle"): 1, ("blue", "square"): 1})
    assert [c.relation for c in reading.claims] == ["above", "left of"]
    back = read_caption("a red circle above a blue square, and a green star to the right of the blue square")
    assert back.objects == Counter({("red", "circle"): 1, ("blue", "square"): 1, ("green", "star"): 1})
    assert [(c.subject.colour, c.relation, c.object.colour) for c in back.claims] == [
        ("red", "above", "blue"),
        ("green", "right of", "blue"),
    ]


@pytest.mark.parametrize(
    ("caption", "objects", "relations"),
    [
        ("a red circle above a blue square", True, True),
        ("a blue square below a red circle", True, True),
        ("a red circle and a blue square", True, None),
        ("a red circle below a blue square", True, False),  # wrong direction
        ("a red circle to the left of a blue square", True, False),  # vertically stacked, not side by side
        ("a red square above a blue square", False, False),  # wrong shape: the claim names no scene object
        ("a red circle above a blue square and a red circle", False, True),  # one object too many
        ("a red circle", False, None),  # one object missing
        ("a red above a blue square", False, False),  # a colour without a shape is no object
        ("a circle above a blue square", False, False),  # a shape without a colour neither
    ],
)
def test_checks_against_the_scene(caption, objects, relations):
    assert objects_right(caption, RED_ABOVE_BLUE) is objects
    assert relations_right(caption, RED_ABOVE_BLUE) is relations


def test_ordered_listings_claim_each_neighbour():
    assert relations_right("a red circle, a blue square and a green star from left to right", THREE_IN_A_ROW)
    assert not relations_right("a blue square, a red circle and a green star from left to right", THREE_IN_A_ROW)
    assert objects_right("a blue square, a red circle and a green star from left to right", THREE_IN_A_ROW)


def test_every_synth_caption_is_right_and_a_swapped_word_is_caught():
    """The checks agree with the captioner's ground truth; changing a colour or shape word breaks them."""
    for i in range(300):
        rng = np.random.default_rng([5, i])
        truth = sample_scene(rng)
        for caption in describe(truth, rng):
            assert objects_right(caption, truth), caption
            assert relations_right(caption, truth) in (True, None), caption
        canonical = describe(truth, rng)[0]
        first = truth.shapes[0]
        other_shape = next(s for s in ("circle", "square", "triangle", "star") if s != first.shape)
        wrong = canonical.replace(f"{first.colour} {first.shape}", f"{first.colour} {other_shape}", 1)
        if (first.colour, other_shape) not in {(s.colour, s.shape) for s in truth.shapes}:
            assert not objects_right(wrong, truth), wrong


@pytest.mark.parametrize(
    ("caption", "error"),
    [
        ("a red circle above a blue square", "right"),
        ("a red circle", "count"),
        ("a red circle above a blue square and a green star", "count"),
        ("a red circle above a green square", "colour"),
        ("a red star above a blue square", "shape"),
        ("a red star above a green square", "colour and shape"),
        ("a blue circle above a red square", "binding"),  # right colours, right shapes, wrongly paired
        ("a circle above a blue square", "colour"),  # a shape without its colour
    ],
)
def test_object_error_says_which_part_of_the_objects_is_wrong(caption, error):
    assert object_error(caption, RED_ABOVE_BLUE) == error
    assert error in OBJECT_ERRORS
