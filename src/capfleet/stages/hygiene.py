"""Caption hygiene: find the degenerate candidates VLMs produce before they are ranked.

Per candidate: repetition loops ("bald bald bald", a phrase repeated), refusals and apologies
("I'm sorry", "I cannot"), captions that are empty or outside `--min-words`/`--max-words`, and
boilerplate openers ("This image shows ..."), which are not degenerate and are stripped only with
`--strip-openers`. Pure text functions: they cost microseconds per caption (bench_hygiene.py).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

# Degenerate kinds, in the order a candidate is checked (the first that applies names it).
EMPTY, TOO_SHORT, TOO_LONG, REPETITION, REFUSAL = "empty", "too_short", "too_long", "repetition", "refusal"
DEGENERATE_KINDS = (EMPTY, REFUSAL, REPETITION, TOO_SHORT, TOO_LONG)
OPENER = "opener"  # counted, and stripped with --strip-openers; never a reason to drop a candidate

_WORD = re.compile(r"[\w']+")
_REFUSAL = re.compile(
    r"^\W*(?:sorry|unfortunately),? i\b"
    r"|\b(?:i'?m|i am) (?:sorry|afraid|unable|not able)\b"
    r"|\bi apologi[sz]e\b"
    r"|\bas an ai\b"
    r"|\bi (?:cannot|can't|can ?not|won't|will not|do not|don't) "
    r"(?:see|view|help|assist|describe|provide|identify|access|process|open|determine|comply)\b",
    re.IGNORECASE,
)
_OPENER = re.compile(
    r"^\s*(?:"
    r"(?:this|the) (?:image|picture|photo|photograph|scene|illustration) "
    r"(?:shows|depicts|features|displays|showcases|captures|presents|portrays|contains|is of)"
    r"|in (?:this|the) (?:image|picture|photo|photograph)(?:,? (?:we can see|there is|there are|you can see))?"
    r"|(?:this|it) is an? (?:image|picture|photo|photograph) of"
    r")\s*[:,]?\s*",
    re.IGNORECASE,
)
_REFUSAL_WITHIN = 200  # characters: refusals and apologies open the answer
# A loop: one n-gram (1..6 words) back to back this many times, or a 4+ word phrase this many times anywhere.
_LOOP_REPEATS = 3
_MAX_LOOP_NGRAM = 6
_PHRASE_NGRAM = 4


@dataclass(frozen=True)
class HygieneOptions:
    enabled: bool = True
    strip_openers: bool = False
    min_words: int = 1
    max_words: int = 0  # 0: no upper limit
    resample_attempts: int = 2  # new samples for an image whose candidates are all degenerate


@dataclass(frozen=True)
class CheckedCaption:
    text: str  # with the opener stripped when asked to
    kind: str | None  # a DEGENERATE_KINDS entry, or None when the caption is usable
    had_opener: bool


def strip_opener(text: str) -> str:
    """'This image shows a dog on a beach.' -> 'A dog on a beach.'"""
    rest = _OPENER.sub("", text, count=1)
    return rest[:1].upper() + rest[1:] if rest and rest != text else rest


def has_repetition_loop(words: list[str]) -> bool:
    """True when an n-gram repeats back to back (`bald bald bald`, `on the left on the left on the left`)
    or a phrase of 4+ words recurs 3 times anywhere (loops with small variations between them)."""
    for size in range(1, _MAX_LOOP_NGRAM + 1):
        # n-gram repeated 3 times back to back <=> 2n consecutive positions where word[i] == word[i + n]
        run = 0
        for word, later in zip(words, words[size:], strict=False):
            run = run + 1 if word == later else 0
            if run >= size * (_LOOP_REPEATS - 1):
                return True
    if len(words) >= _PHRASE_NGRAM * _LOOP_REPEATS:
        phrases = Counter(zip(*(words[offset:] for offset in range(_PHRASE_NGRAM)), strict=False))
        return max(phrases.values()) >= _LOOP_REPEATS
    return False


def check_caption(text: str, options: HygieneOptions) -> CheckedCaption:
    """The caption as it will be kept, and why it is degenerate (None if it is not)."""
    had_opener = bool(_OPENER.match(text))
    if had_opener and options.strip_openers:
        text = strip_opener(text)
    words = _WORD.findall(text.lower())
    kind = None
    if not words:
        kind = EMPTY
    elif _REFUSAL.search(text, 0, _REFUSAL_WITHIN):
        kind = REFUSAL
    elif has_repetition_loop(words):
        kind = REPETITION
    elif len(words) < options.min_words:
        kind = TOO_SHORT
    elif options.max_words and len(words) > options.max_words:
        kind = TOO_LONG
    return CheckedCaption(text, kind, had_opener)


@dataclass
class Cleaned:
    """One image's candidates after hygiene: the usable ones, or (all degenerate) why not."""

    candidates: list[str]
    flags: list[str]  # degenerate kinds found, sorted; empty when at least one candidate was usable
    counts: Counter


def clean_candidates(texts: list[str], options: HygieneOptions) -> Cleaned:
    """Drop degenerate candidates. If none is usable, keep them all (stripped) and say why in `flags`."""
    counts: Counter = Counter()
    usable, degenerate, kinds = [], [], set()
    for text in texts:
        checked = check_caption(text, options)
        counts[OPENER] += checked.had_opener
        if checked.kind is None:
            usable.append(checked.text)
        else:
            counts[checked.kind] += 1
            kinds.add(checked.kind)
            if checked.text.strip():
                degenerate.append(checked.text)
    if usable:
        return Cleaned(list(dict.fromkeys(usable)), [], counts)
    return Cleaned(list(dict.fromkeys(degenerate or texts)), sorted(kinds or {EMPTY}), counts)
