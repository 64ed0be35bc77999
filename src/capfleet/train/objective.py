"""What a training step optimises beyond the captioning and contrastive losses.

`capfleet train` uses the plain :class:`Objective` (nothing beyond). Distillation
(:mod:`capfleet.train.distill`) subclasses it to carry teacher targets through the data loader
and add its terms, so both commands share one training loop: resume, checkpoints, DDP, logs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import torch
from PIL import Image

from .data import CaptionDataset, CaptionRecord, collate

Transform = Callable[[Image.Image], torch.Tensor]  # PIL image -> pixel tensor
Tokenize = Callable[[str], list[int]]  # caption -> token ids


class Objective:
    """The hooks the trainer calls; every rank builds its own copy (it must pickle for ``--nproc``)."""

    wants_embeds = False  # the extra terms read the student's image/text embeddings
    wants_objects = False  # the extra terms read the student's per-token object logits
    weights: dict[str, float] = {}  # name -> weight of each extra term in the total loss

    def prepare(self, tokenizer: Any, image_processor: Any, device: torch.device) -> None:
        """Called once per process when the student's tokenizer and image processor are known."""

    def dataset(
        self,
        records: Sequence[CaptionRecord],
        transform: Transform,
        tokenize: Tokenize,
        skipped: Counter,
        targets: Callable[[CaptionRecord], torch.Tensor] | None = None,
    ):
        """The training samples (the plain trainer's: image, caption ids and, with --object-loss-weight,
        per-token object targets)."""
        return CaptionDataset(records, transform, tokenize, skipped, targets=targets)

    def collate(self, batch: Sequence[tuple], pad_id: int = 0) -> dict[str, torch.Tensor]:
        return collate(batch, pad_id)

    def losses(self, out: Any, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Unweighted extra terms for one micro-batch, each a mean over this process's samples."""
        return {}
