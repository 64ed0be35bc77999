"""CLIPScore and RefCLIPScore (Hessel et al. 2021, arXiv:2104.08718), reference-free caption quality.

Paper definitions, so numbers compare with published ones: CLIP-S = w * max(cos(image, caption), 0), w = 2.5,
every text prefixed "A photo depicts "; RefCLIP-S = harmonic mean of CLIP-S and max(max_r cos(caption, r), 0)
over the references r (unweighted, as in the authors' code). torchmetrics' CLIPScore is 100 * max(cos, 0)
without prefix: pass ``weight=100, prefix=""`` for that. The scorer is any object whose ``embed_images`` /
``embed_texts`` return L2-normalised rows, e.g. ``capfleet.models.load_scorer(name, device="cpu")``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image

WEIGHT = 2.5
PREFIX = "A photo depicts "
BATCH_SIZE = 32
MAX_PIXELS = 89_478_485  # same bound as `capfleet caption`


def load_image(path: str | Path) -> Image.Image:
    """The RGB image exactly as `capfleet caption` showed it to models (EXIF upright, alpha on white)."""
    from capfleet.stages.decode import DecodeError, decode_image

    try:
        return decode_image(Path(path).read_bytes(), MAX_PIXELS)[0]
    except (DecodeError, OSError) as exc:
        raise ValueError(f"cannot read image {path}: {exc}") from exc


def embed_images(scorer, images: Sequence[Image.Image | str | Path], batch_size: int = BATCH_SIZE) -> torch.Tensor:
    """(n, d) normalised embeddings; paths are opened one batch at a time so memory stays flat."""
    chunks = []
    for start in range(0, len(images), batch_size):
        batch = [im if isinstance(im, Image.Image) else load_image(im) for im in images[start : start + batch_size]]
        chunks.append(scorer.embed_images(batch).float().cpu())
    return torch.cat(chunks) if chunks else torch.empty(0, 0)


def embed_texts(scorer, texts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
    """(n, d) normalised text embeddings, batched."""
    starts = range(0, len(texts), batch_size)
    chunks = [scorer.embed_texts(list(texts[i : i + batch_size])).float().cpu() for i in starts]
    return torch.cat(chunks) if chunks else torch.empty(0, 0)


def clip_scores(image_embeddings: torch.Tensor, text_embeddings: torch.Tensor, weight: float = WEIGHT) -> torch.Tensor:
    """Per-pair CLIP-S for row i of each matrix: weight * max(cos, 0), in [0, weight]."""
    if image_embeddings.shape != text_embeddings.shape:
        raise ValueError(f"need one caption per image, got {tuple(image_embeddings.shape)} vs {text_embeddings.shape}")
    return weight * (image_embeddings * text_embeddings).sum(-1).clamp(min=0)


def ref_clip_scores(
    clip_s: torch.Tensor,
    caption_embeddings: torch.Tensor,
    reference_embeddings: torch.Tensor,
    reference_to_image: torch.Tensor,
) -> torch.Tensor:
    """Per-image RefCLIP-S: harmonic mean of CLIP-S and the caption's best cosine with one of its references."""
    ref_to_image = torch.as_tensor(reference_to_image, dtype=torch.long)
    cos = (reference_embeddings * caption_embeddings[ref_to_image]).sum(-1)
    best = torch.full((len(caption_embeddings),), float("-inf")).scatter_reduce(0, ref_to_image, cos, "amax")
    ref_s = best.clamp(min=0)
    return torch.where(clip_s + ref_s > 0, 2 * clip_s * ref_s / (clip_s + ref_s), torch.zeros_like(clip_s))


def clip_score(
    scorer,
    images: Sequence[Image.Image | str | Path],
    captions: Sequence[str],
    batch_size: int = BATCH_SIZE,
    weight: float = WEIGHT,
    prefix: str = PREFIX,
) -> torch.Tensor:
    """Per-image CLIP-S of ``captions[i]`` for ``images[i]`` (PIL images or paths); ``.mean()`` is the corpus score."""
    if len(images) != len(captions):
        raise ValueError(f"{len(images)} images but {len(captions)} captions")
    text = embed_texts(scorer, [prefix + c for c in captions], batch_size)
    return clip_scores(embed_images(scorer, images, batch_size), text, weight)
