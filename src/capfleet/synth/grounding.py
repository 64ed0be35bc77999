"""Read a caption back into the objects and spatial claims it makes, and check them against a scene.

CIDEr rewards captions that share n-grams with the references, so "a red circle above a blue square"
scores well for a scene with a red *square* above a blue square. These checks do not: a caption is
parsed with the synth vocabulary into noun phrases ``[a|an|the] [size] colour shape`` and the spatial
phrases between them ("above", "to the left of", "next to", "... from left to right"), then

- its **objects** are right when the multiset of introduced (colour, shape) pairs is exactly the
  scene's ("the blue square" refers back to an object already named and adds none), and
- its **relations** are right when every spatial claim holds for the named shapes by the same
  geometry (:func:`relate`) that synth captions are phrased from.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from .scene import COLOURS, SHAPES, SIZES, Scene, relate

ARTICLES = ("a", "an", "the")
# spatial phrase -> relation name of scene.relate (no phrase contains another)
SPATIAL_PHRASES = (
    ("to the left of", "left of"),
    ("to the right of", "right of"),
    ("next to", "next to"),
    ("above", "above"),
    ("below", "below"),
)
ORDER_PHRASES = {"from left to right": "left of", "from top to bottom": "above"}
WORD = re.compile(r"[a-z]+|,")


@dataclass(frozen=True)
class Mention:
    """One noun phrase: ``colour`` or ``shape`` is None when the caption left it out (never right)."""

    colour: str | None
    shape: str | None
    refers_back: bool  # "the ...": names an object already introduced
    start: int  # token span in the caption
    end: int


@dataclass(frozen=True)
class Claim:
    subject: Mention
    relation: str  # a relation name of scene.relate
    object: Mention


@dataclass(frozen=True)
class Reading:
    objects: Counter  # (colour, shape) -> how many objects the caption introduces
    claims: tuple[Claim, ...]


def mentions(tokens: list[str]) -> list[Mention]:
    """Noun phrases, anchored on each shape word or on a colour word that no shape follows."""
    found, i = [], 0
    while i < len(tokens):
        colour = tokens[i] if tokens[i] in COLOURS else None
        shape_at = i + 1 if colour else i
        shape = tokens[shape_at] if shape_at < len(tokens) and tokens[shape_at] in SHAPES else None
        if colour is None and shape is None:
            i += 1
            continue
        start = i
        if start > 0 and tokens[start - 1] in SIZES:
            start -= 1
        if start > 0 and tokens[start - 1] in ARTICLES:
            start -= 1
        end = shape_at + 1 if shape else i + 1
        found.append(Mention(colour, shape, tokens[start] == "the", start, end))
        i = end
    return found


def _relations_in(words: str) -> list[str]:
    """Relation names in the words between two noun phrases, in order ("above and to the left of")."""
    hits = [(m.start(), relation) for phrase, relation in SPATIAL_PHRASES for m in re.finditer(rf"\b{phrase}\b", words)]
    return [relation for _, relation in sorted(hits)]


def read_caption(caption: str) -> Reading:
    """The objects a caption introduces and the spatial claims it makes between neighbouring phrases."""
    tokens = WORD.findall(caption.lower())
    found = mentions(tokens)
    objects: Counter = Counter()
    for m in found:
        introduced = (m.colour, m.shape) in objects
        if not (m.refers_back and introduced):
            objects[(m.colour, m.shape)] += 1
    claims = []
    for left, right in zip(found, found[1:], strict=False):
        between = " ".join(tokens[left.end : right.start])
        claims.extend(Claim(left, relation, right) for relation in _relations_in(between))
    tail = " ".join(tokens[found[-1].end :]) if found else ""
    for phrase, relation in ORDER_PHRASES.items():
        if phrase in tail:  # "A, B and C from left to right": A left of B, B left of C
            claims.extend(Claim(a, relation, b) for a, b in zip(found, found[1:], strict=False))
    return Reading(objects, tuple(claims))


def scene_objects(scene: Scene) -> Counter:
    return Counter((s.colour, s.shape) for s in scene.shapes)


def objects_right(caption: str, scene: Scene) -> bool:
    """The caption names exactly the scene's multiset of (colour, shape) objects."""
    return read_caption(caption).objects == scene_objects(scene)


OBJECT_ERRORS = ("right", "count", "colour", "shape", "colour and shape", "binding")


def _part(objects: Counter, index: int) -> Counter:
    """The multiset of colours (index 0) or of shapes (index 1) of (colour, shape) objects."""
    return Counter(key[index] for key in objects.elements())


def object_error(caption: str, scene: Scene) -> str:
    """Which part of the objects a caption gets wrong, one of OBJECT_ERRORS: "count" (too many or too few
    objects), else "colour" / "shape" / "colour and shape" (the multiset of colours / of shapes differs),
    else "binding" (right colours and right shapes, paired wrongly). Says what a model has not learnt yet."""
    named, true = read_caption(caption).objects, scene_objects(scene)
    if named == true:
        return "right"
    if sum(named.values()) != sum(true.values()):
        return "count"
    colours_wrong = _part(named, 0) != _part(true, 0)
    shapes_wrong = _part(named, 1) != _part(true, 1)
    if colours_wrong and shapes_wrong:
        return "colour and shape"
    return "colour" if colours_wrong else "shape" if shapes_wrong else "binding"


def claim_holds(claim: Claim, scene: Scene) -> bool:
    """True when both phrases name one shape of the scene and the relation holds between those shapes."""
    by_kind = {(s.colour, s.shape): s for s in scene.shapes}
    subject = by_kind.get((claim.subject.colour, claim.subject.shape))
    obj = by_kind.get((claim.object.colour, claim.object.shape))
    return subject is not None and obj is not None and subject is not obj and claim.relation in relate(subject, obj)


def relations_right(caption: str, scene: Scene) -> bool | None:
    """Every spatial claim of the caption holds in the scene; None when it makes no spatial claim."""
    claims = read_caption(caption).claims
    return all(claim_holds(c, scene) for c in claims) if claims else None
