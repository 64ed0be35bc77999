"""Image<->text retrieval recall (R@K) from embedding matrices, with the multi-caption protocol of COCO/Flickr.

Texts are mapped to their image by ``text_to_image_index``: image->text is a hit when ANY of the image's
captions ranks in the top K; text->image when the caption's own image does. Ties count against the query
(rank = number of wrong items scoring >= the right one), so a collapsed scorer cannot score R@1 = 1.
Similarities are computed in row chunks, so 25k images x 125k captions fit in memory.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

KS = (1, 5, 10)
CHUNK = 1024


def _ranks_image_to_text(images: torch.Tensor, texts: torch.Tensor, owner: torch.Tensor) -> torch.Tensor:
    ranks = []
    for start in range(0, len(images), CHUNK):
        sims = images[start : start + CHUNK] @ texts.T  # (chunk, n_texts)
        own = owner[None, :] == torch.arange(start, start + len(sims))[:, None]
        best = sims.masked_fill(~own, float("-inf")).amax(1, keepdim=True)  # best of the image's own captions
        ranks.append(((sims >= best) & ~own).sum(1))
    return torch.cat(ranks)


def _ranks_text_to_image(images: torch.Tensor, texts: torch.Tensor, owner: torch.Tensor) -> torch.Tensor:
    ranks = []
    for start in range(0, len(texts), CHUNK):
        sims = texts[start : start + CHUNK] @ images.T  # (chunk, n_images)
        target = owner[start : start + len(sims)]
        right = sims.gather(1, target[:, None])
        wrong = torch.arange(len(images))[None, :] != target[:, None]
        ranks.append(((sims >= right) & wrong).sum(1))
    return torch.cat(ranks)


def retrieval_recall(
    image_embeddings: torch.Tensor,
    text_embeddings: torch.Tensor,
    text_to_image_index: Sequence[int] | torch.Tensor | None = None,
    ks: Sequence[int] = KS,
) -> dict[str, float]:
    """{"i2t_R@K": ..., "t2i_R@K": ...} as fractions in [0, 1], plus median ranks ("i2t_MedR", 1 = first).

    Rows are compared by dot product, so pass L2-normalised embeddings for cosine similarity.
    ``text_to_image_index[j]`` is the image row caption j describes; None means text j belongs to image j.
    Every image needs at least one caption.
    """
    images, texts = image_embeddings.float().cpu(), text_embeddings.float().cpu()
    if text_to_image_index is None:
        if len(images) != len(texts):
            raise ValueError(f"{len(images)} images but {len(texts)} texts: pass text_to_image_index")
        text_to_image_index = range(len(texts))
    owner = torch.as_tensor(text_to_image_index, dtype=torch.long).cpu()
    if owner.shape != (len(texts),):
        raise ValueError(f"text_to_image_index needs one entry per text ({len(texts)}), got {tuple(owner.shape)}")
    if len(images) == 0 or images.shape[1:] != texts.shape[1:]:
        raise ValueError(f"need non-empty matrices of one width, got {tuple(images.shape)} and {tuple(texts.shape)}")
    if not (torch.isfinite(images).all() and torch.isfinite(texts).all()):
        raise ValueError("embeddings contain NaN or inf")
    if owner.min() < 0 or owner.max() >= len(images):
        raise ValueError("text_to_image_index points outside the image rows")
    uncaptioned = (torch.bincount(owner, minlength=len(images)) == 0).nonzero().flatten()
    if len(uncaptioned):
        raise ValueError(f"{len(uncaptioned)} images have no caption, e.g. row {int(uncaptioned[0])}")
    i2t, t2i = _ranks_image_to_text(images, texts, owner), _ranks_text_to_image(images, texts, owner)
    result = {f"i2t_R@{k}": int((i2t < k).sum()) / len(i2t) for k in ks}
    result.update({f"t2i_R@{k}": int((t2i < k).sum()) / len(t2i) for k in ks})
    result.update({"i2t_MedR": float(i2t.float().median()) + 1, "t2i_MedR": float(t2i.float().median()) + 1})
    return result
