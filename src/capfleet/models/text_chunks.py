"""Cutting a caption too long for the scorer into pieces it can read whole.

CLIP reads 77 tokens and SigLIP 64; a dense VLM caption is often longer, and truncating it makes
its score say nothing about its end. Sentences are packed greedily into chunks that fit; a
sentence that alone does not fit is cut between words, and a word that alone does not fit
between tokens. Nothing is dropped: the chunks together hold every word of the caption.
"""

from __future__ import annotations

import re

_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+")


def _length(tokenizer, text: str) -> int:
    """Tokens the scorer would read for `text`, special tokens included."""
    return len(tokenizer(text, truncation=False)["input_ids"])


def _split_word(tokenizer, word: str, limit: int) -> list[str]:
    ids = tokenizer(word, add_special_tokens=False, truncation=False)["input_ids"]
    room = max(1, limit - (_length(tokenizer, "") or 2))
    return [tokenizer.decode(ids[i : i + room]).strip() for i in range(0, len(ids), room)]


def _pack(tokenizer, pieces: list[str], limit: int) -> list[str]:
    """Join consecutive pieces while the result still fits."""
    chunks: list[str] = []
    current = ""
    for piece in pieces:
        joined = f"{current} {piece}" if current else piece
        if current and _length(tokenizer, joined) > limit:
            chunks.append(current)
            current = piece
        else:
            current = joined
    if current:
        chunks.append(current)
    return chunks


def _fitting_pieces(tokenizer, sentence: str, limit: int) -> list[str]:
    if _length(tokenizer, sentence) <= limit:
        return [sentence]
    words: list[str] = []
    for word in sentence.split():
        words += [word] if _length(tokenizer, word) <= limit else _split_word(tokenizer, word, limit)
    return _pack(tokenizer, words, limit)


def text_chunks(text: str, tokenizer, limit: int) -> list[str]:
    """`[text]` when it fits in `limit` tokens, else its sentence chunks, each of which fits."""
    if _length(tokenizer, text) <= limit:
        return [text]
    pieces: list[str] = []
    for sentence in _SENTENCE_END.split(text.strip()):
        pieces += _fitting_pieces(tokenizer, sentence, limit)
    return _pack(tokenizer, pieces, limit)
