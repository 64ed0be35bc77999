"""Caption hygiene on its own: which captions are degenerate, and why."""

from __future__ import annotations

import pytest

from capfleet.stages.hygiene import HygieneOptions, check_caption, clean_candidates, strip_opener

DEFAULT = HygieneOptions()
FINE = [
    "a red circle left of a blue square",
    "a red circle above a red square and a red star",  # repeated words, but no loop
    "Two dogs run on a beach at sunset while a man throws a ball into the waves.",
    "A sign on the door reads 'sorry, we are closed' in red letters.",
    "A sorry-looking dog sits in the rain.",
    "Sorry we're closed sign hanging on a shop door.",
]


@pytest.mark.parametrize("text", FINE)
def test_ordinary_captions_are_kept(text):
    assert check_caption(text, DEFAULT).kind is None


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("bald bald bald bald", "repetition"),
        ("a man with a hat hat hat hat", "repetition"),
        ("a dog on the left on the left on the left of a tree", "repetition"),
        (
            "a cat on a red sofa near the window, a cat on a red sofa by the door, and a cat on a red sofa again",
            "repetition",
        ),
        ("I'm sorry, but I cannot describe people in images.", "refusal"),
        ("I am unable to view the image you provided.", "refusal"),
        ("As an AI language model, I can't see pictures.", "refusal"),
        ("Sorry, I can't help with that.", "refusal"),
        ("I apologise, the image did not load.", "refusal"),
        ("", "empty"),
        ("  ... !!", "empty"),
    ],
)
def test_degenerate_captions_are_named(text, kind):
    assert check_caption(text, DEFAULT).kind == kind


def test_word_limits():
    options = HygieneOptions(min_words=3, max_words=6)
    assert check_caption("a dog", options).kind == "too_short"
    assert check_caption("a dog on grass", options).kind is None
    assert check_caption("a dog on the green grass near a lake", options).kind == "too_long"
    assert check_caption("a dog on the green grass near a lake", HygieneOptions(min_words=3)).kind is None


def test_openers_are_counted_and_stripped_only_when_asked():
    kept = check_caption("This image shows a dog on a beach.", DEFAULT)
    assert kept.had_opener and kept.kind is None and kept.text == "This image shows a dog on a beach."
    stripped = check_caption("The image depicts: a dog on a beach.", HygieneOptions(strip_openers=True))
    assert stripped.had_opener and stripped.text == "A dog on a beach."
    assert strip_opener("In this image, we can see two cats.") == "Two cats."
    assert strip_opener("A photo of a dog.") == "A photo of a dog."  # not boilerplate: the caption itself
    assert check_caption("This image shows", HygieneOptions(strip_openers=True)).kind == "empty"


def test_degenerate_candidates_are_dropped_and_counted():
    cleaned = clean_candidates(["bald bald bald", "a bald man", "I'm sorry, I cannot help.", "a bald man"], DEFAULT)
    assert cleaned.candidates == ["a bald man"] and cleaned.flags == []
    assert cleaned.counts["repetition"] == 1 and cleaned.counts["refusal"] == 1


def test_all_degenerate_keeps_them_with_flags():
    cleaned = clean_candidates(["bald bald bald", "I cannot see the image."], DEFAULT)
    assert cleaned.candidates == ["bald bald bald", "I cannot see the image."]
    assert cleaned.flags == ["refusal", "repetition"]
