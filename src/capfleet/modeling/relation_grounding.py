"""Relation words grounded in the captioner's own object map (issue 24).

The built-in model's encoder names the object under each image token well (its captions name exactly the
scene's objects for 99% of held-out scenes), but its decoder said the wrong direction for the pair it named in
about a quarter of the captions that make a spatial claim: in three-shape scenes, after "a red circle to the
left of", it often went on with a shape the circle stands right of. Four training recipes did not fix that.
So decoding reads where each object is off the object map (the object head's class probabilities per token:
their centroid, and a small or large radius from their mass) and, like detector-grounded captioners that fill
a sentence's slots from detections, masks the next words that would make a false claim: a relation phrase no
other object of the map stands in, a partner object that does not stand where the phrase says, an order
("from left to right") the named objects are not in. Every other word is the decoder's own choice.

Only models whose object head names synth's colour+shape classes (``config.ground_relations``) do this.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import LogitsProcessor

from capfleet.synth.grounding import ARTICLES, ORDER_PHRASES, Mention, mentions
from capfleet.synth.scene import COLOURS, OBJECT_CLASSES, RELATION_WORDS, SHAPES, SIZES, Shape, relate

Key = tuple[str, str]  # (colour, shape)

# every relation phrase synth captions use, with the relations it claims ("above and to the left of": both)
_PHRASES: tuple[tuple[tuple[str, ...], frozenset[str]], ...] = (
    *((tuple(RELATION_WORDS[r].split()), frozenset([r])) for r in RELATION_WORDS),
    *(
        (tuple(f"{RELATION_WORDS[v]} and {RELATION_WORDS[h]}".split()), frozenset([v, h]))
        for v in ("above", "below")
        for h in ("left of", "right of")
    ),
    (("next", "to"), frozenset(["next to"])),
)
_RELATIONS_OF = dict(_PHRASES)
_ORDERS = tuple((tuple(phrase.split()), relation) for phrase, relation in ORDER_PHRASES.items())
# the last words after which a rule can apply; after any other ("on", ",", "background", end of caption) none does
_TRIGGERS = frozenset([*COLOURS, *SHAPES, *SIZES, *ARTICLES, *(w for words, _ in (*_PHRASES, *_ORDERS) for w in words)])
# a radius per size word: the map's resolution (8 x 8 tokens) only tells small from large
_RADIUS = {size: sum(bounds) / 2 for size, bounds in SIZES.items()}
_PRESENT = 0.5  # an object is in the image when some token names its class with at least this probability
# the share of the image's tokens (its summed class probability over the token count) above which an object is
# the large kind: 2.5 of the built-in model's 8 x 8 tokens; a distilled student's coarser grid holds the same share
_LARGE_SHARE = 2.5 / 64


@dataclass(frozen=True)
class Words:
    """What the next word may be: one of ``only`` when it is set, and none of ``never``."""

    only: frozenset[str] | None = None
    never: frozenset[str] = frozenset()


FREE = Words()


def layout_of(class_probs: torch.Tensor) -> dict[Key, Shape]:
    """Where each object of one image is: (tokens x OBJECT_CLASSES) probabilities on a square token grid ->
    {(colour, shape): Shape estimate} for the classes some token holds with at least _PRESENT. Two objects of one
    class would share one centroid; synth scenes never hold two (their colour+shape pairs are distinct)."""
    tokens = class_probs.shape[0]
    grid = int(round(tokens**0.5))
    centres = (torch.arange(grid, dtype=torch.float32) + 0.5) / grid
    ys, xs = (axis.flatten() for axis in torch.meshgrid(centres, centres, indexing="ij"))
    probs = class_probs.float()
    layout = {}
    for index, name in enumerate(OBJECT_CLASSES[:-1]):
        weight = probs[:, index]
        if float(weight.max()) < _PRESENT:
            continue
        mass = float(weight.sum())
        colour, shape = name.split()
        size = "large" if mass > _LARGE_SHARE * tokens else "small"
        x, y = float((weight * xs).sum()) / mass, float((weight * ys).sum()) / mass
        layout[(colour, shape)] = Shape(shape, colour, size, x, y, _RADIUS[size], 0.0, COLOURS[colour])
    return layout


def _partners(layout: dict[Key, Shape], subject: Key, relations: frozenset[str]) -> set[Key]:
    """Objects of the map, other than the subject, that the subject stands in all these relations to."""
    here = layout[subject]
    return {key for key, other in layout.items() if key != subject and relations <= set(relate(here, other))}


def _ruled_out(said: tuple[str, ...], phrases, holds) -> Words:
    """After the first words of a phrase: never a next word that leads only to phrases whose relation does not
    hold (``holds(relation)``)."""
    ahead = [(words, rel) for words, rel in phrases if len(words) > len(said) and words[: len(said)] == said]
    possible = {words[len(said)] for words, rel in ahead if holds(rel)}
    return Words(never=frozenset(words[len(said)] for words, _ in ahead) - possible)


def _phrase_words(said: tuple[str, ...], layout: dict[Key, Shape], subject: Key) -> Words:
    """After a subject: never a relation phrase that no other object of the map satisfies."""
    return _ruled_out(said, _PHRASES, lambda relations: _partners(layout, subject, relations))


def _order_words(said: tuple[str, ...], layout: dict[Key, Shape], named: list[Key]) -> Words:
    """After a list of objects: never an order phrase ("from left to right") they do not stand in."""
    if any(key not in layout for key in named):
        return FREE
    pairs = list(zip(named, named[1:], strict=False))
    return _ruled_out(said, _ORDERS, lambda relation: all(relation in relate(layout[a], layout[b]) for a, b in pairs))


def next_words(words: list[str], layout: dict[Key, Shape]) -> Words:
    """The constraint on the word after ``words`` (a caption's beginning) that keeps its claims true to ``layout``."""
    found = mentions(words)
    complete = [m for m in found if m.shape is not None]
    if not complete:
        return FREE
    last = found[-1]
    if last.shape is None:  # "... to the left of a red": the partner's shape comes next
        subject, phrase = _claim_before(words, found[:-1], last.start)
        if subject not in layout:
            return FREE
        fits = _partners(layout, subject, phrase)
        return Words(only=frozenset(shape for colour, shape in fits if colour == last.colour))
    key = (last.colour, last.shape)
    said = tuple(words[last.end :])
    if not said:
        return _phrase_words((), layout, key) if key in layout else FREE
    if key not in layout:
        return FREE
    bare = said
    while bare and bare[-1] in (*ARTICLES, *SIZES):  # "... to the left of a small": the partner's colour next
        bare = bare[:-1]
    relations = _RELATIONS_OF.get(bare) if len(bare) < len(said) else None
    if relations is not None:
        colours = frozenset(colour for colour, _ in _partners(layout, key, relations))
        return Words(only=colours | (frozenset(SIZES) if said[-1] in ARTICLES else frozenset()))
    if any(phrase[: len(said)] == said for phrase, _ in _PHRASES):
        return _phrase_words(said, layout, key)
    return _order_words(said, layout, [(m.colour, m.shape) for m in complete])


def _claim_before(words: list[str], earlier: list[Mention], start: int) -> tuple[Key | None, frozenset[str]]:
    """The subject and relations of the phrase that ends where a partner's noun phrase starts, if any."""
    if not earlier or earlier[-1].shape is None:
        return None, frozenset()
    subject = earlier[-1]
    relations = _RELATIONS_OF.get(tuple(words[subject.end : start]))
    return ((subject.colour, subject.shape), relations) if relations else (None, frozenset())


class RelationGrounding(LogitsProcessor):
    """Masks, per generated row, the next words that would make a spatial claim the image's object map denies.
    Rows are image-major (``num_return_sequences`` / beams per image, as HF expands them)."""

    def __init__(self, layouts: list[dict[Key, Shape]], vocabulary: dict[str, int], special: set[str]):
        self.layouts = layouts
        self.word_of = {index: word for word, index in vocabulary.items() if word not in special}
        self.index_of = {word: index for index, word in self.word_of.items()}
        self.masks: dict[Words, torch.Tensor] = {}

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        per_image = max(1, input_ids.shape[0] // len(self.layouts))
        masks, seen = [], {}  # an image's candidates and beams often share a beginning: one parse for them
        free = self._mask(FREE, scores)
        for row, ids in enumerate(input_ids.tolist()):
            image = min(row // per_image, len(self.layouts) - 1)
            key = (image, *ids)
            if self.word_of.get(ids[-1]) not in _TRIGGERS:
                masks.append(free)
                continue
            if key not in seen:
                words = [self.word_of[i] for i in ids if i in self.word_of]
                seen[key] = self._mask(next_words(words, self.layouts[image]), scores)
            masks.append(seen[key])
        return scores.masked_fill_(torch.stack(masks), float("-inf"))

    def _mask(self, rule: Words, scores: torch.Tensor) -> torch.Tensor:
        """The vocabulary positions a rule bans, built once per distinct rule (there are few)."""
        mask = self.masks.get(rule)
        if mask is None:
            banned = set(rule.never)
            if rule.only:  # an empty `only` would leave no word: then it is no rule
                banned |= {word for word in self.index_of if word not in rule.only}
            mask = torch.zeros(scores.shape[-1], dtype=torch.bool, device=scores.device)
            mask[[self.index_of[word] for word in banned if word in self.index_of]] = True
            self.masks[rule] = mask
        return mask


def relation_grounding(model, encoder_rows: torch.Tensor, tokenizer) -> RelationGrounding:
    """The logits processor for a batch's encoder output, for a model whose config says ``ground_relations``."""
    config = model.config
    if config.object_classes != len(OBJECT_CLASSES) or model.object_head is None:
        raise ValueError(
            f"ground_relations needs an object head over the {len(OBJECT_CLASSES)} synth classes, "
            f"this model has {config.object_classes}"
        )
    with torch.inference_mode():
        logits = model.object_head(encoder_rows)[..., : len(OBJECT_CLASSES)].float()
    layouts = [layout_of(image) for image in logits.softmax(-1)]
    return RelationGrounding(layouts, tokenizer.get_vocab(), set(tokenizer.all_special_tokens))
