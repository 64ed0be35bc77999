"""The two losses of capfleet's captioner, defined once: the model's forward, training steps and the
held-out evaluation all call these."""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_LABEL = -100  # label of a position that is no target (padding)


def lm_loss(logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Next-token cross-entropy: the logits at position t predict ``labels[:, t + 1]``; ``IGNORE_LABEL``
    positions are left out. ``reduction="sum"`` lets a caller normalise over tokens it counts itself."""
    return F.cross_entropy(
        logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=IGNORE_LABEL, reduction=reduction
    )


def contrastive_loss(logits_per_text: torch.Tensor, image_to_text: torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric InfoNCE of CLIP: row i of the (texts x images) similarity matrix should pick image i, and
    image i should pick text i. ``image_to_text``: the image side's logits when each image also ranks texts
    beyond the batch's (hard negatives, as extra columns after the batch's texts)."""
    target = torch.arange(logits_per_text.shape[0], device=logits_per_text.device)
    image_side = logits_per_text.t() if image_to_text is None else image_to_text
    return (F.cross_entropy(logits_per_text, target) + F.cross_entropy(image_side, target)) / 2
