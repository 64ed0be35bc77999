"""Hard negative captions: the same caption with one word swapped (NegCLIP-style).

In-batch negatives differ from the true caption in almost every word, so a scorer trained on
them alone cannot tell "a red circle left of a blue star" from "a red circle left of a green
star" -- exactly the choice it faces when ranking one image's sampled candidates. Swapping a
single token with the token at the same position of another caption in the batch yields such
near-misses without knowing anything about the vocabulary.
"""

from __future__ import annotations

import torch


def swap_one_token(input_ids: torch.Tensor, attention_mask: torch.Tensor, generator: torch.Generator | None = None):
    """Per row, replace one content token with the next row's token at that position where they differ.

    Content positions exclude the first token (BOS) and the last real token (EOS). A row with no
    such position gets the next row's caption whole (still a negative).
    """
    other_ids, other_mask = input_ids.roll(1, dims=0), attention_mask.roll(1, dims=0)
    lengths = attention_mask.sum(dim=1, keepdim=True)
    positions = torch.arange(input_ids.shape[1], device=input_ids.device).unsqueeze(0)
    content = (positions >= 1) & (positions < lengths - 1) & (positions < other_mask.sum(dim=1, keepdim=True) - 1)
    candidates = content & (input_ids != other_ids)
    noise = torch.rand(input_ids.shape, generator=generator, device=input_ids.device)
    choice = torch.where(candidates, noise, torch.full_like(noise, -1.0)).argmax(dim=1)
    has_choice = candidates.any(dim=1)
    negatives = input_ids.clone()
    rows = torch.arange(input_ids.shape[0], device=input_ids.device)
    negatives[rows, choice] = torch.where(has_choice, other_ids[rows, choice], negatives[rows, choice])
    negatives = torch.where(has_choice.unsqueeze(1), negatives, other_ids)
    mask = torch.where(has_choice.unsqueeze(1), attention_mask, other_mask)
    return negatives, mask


# Relation words and their opposites: "a red circle to the left of a blue star" -> "... to the right of ...".
OPPOSITES = (("left", "right"), ("above", "below"))


def relation_map(tokenizer) -> torch.Tensor:
    """Vocabulary-sized id map sending each relation word to its opposite (identity elsewhere)."""
    table = torch.arange(len(tokenizer))
    vocab = tokenizer.get_vocab()
    for a, b in OPPOSITES:
        if a in vocab and b in vocab:
            table[vocab[a]], table[vocab[b]] = vocab[b], vocab[a]
    return table


def swap_relations(input_ids: torch.Tensor, table: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The captions with every relation word turned to its opposite, and per row whether any was.

    The one-word swaps above rarely hit a relation word with its opposite (most batch neighbours hold
    another word there), so a scorer trained on them alone ranks "left of" and "right of" alike.
    """
    swapped = table.to(input_ids.device)[input_ids]
    return swapped, (swapped != input_ids).any(dim=1)
