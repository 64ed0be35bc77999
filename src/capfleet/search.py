"""``capfleet search OUT QUERY``: find images in a captioned dataset by text or by an example image.

``capfleet caption --embeddings`` leaves ``embeddings.npz`` (keys, image and chosen-caption embeddings,
L2-normalised) in every shard folder. The query is embedded with the scorer that made them and
compared with every image embedding: exact cosine search in numpy, one matrix product, which is
fast up to a few million images (a million 512-d float32 rows is 2 GB); past that, an approximate
index such as FAISS over the same arrays is the tool.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from capfleet.formats.imagefolder import EMBEDDINGS_NAME, read_rows


@dataclass(frozen=True)
class Hit:
    score: float  # cosine similarity of the query and the image
    key: str
    image_path: Path
    text: str  # the image's chosen caption


@dataclass
class EmbeddingIndex:
    keys: list[str]
    images: np.ndarray  # (N, D) float32, rows L2-normalised
    paths: list[Path]
    texts: list[str]
    scorer: str  # the scorer that made the embeddings, as the rows name it


def load_index(out_dir: str | Path) -> EmbeddingIndex:
    """Every shard's embeddings with the rows they belong to; a clear error when there are none."""
    root = Path(out_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a directory")
    keys, blocks, paths, texts, scorers = [], [], [], [], set()
    for npz in sorted(root.glob(f"*/{EMBEDDINGS_NAME}")):
        rows = {row["key"]: row for row in read_rows(npz.parent)}
        with np.load(npz) as arrays:
            shard_keys, images = [str(k) for k in arrays["keys"]], arrays["image"].astype(np.float32)
        for key in shard_keys:
            keys.append(key)
            paths.append(root / rows[key]["file_name"])
            texts.append(rows[key]["text"])
            scorers.add(rows[key]["scorer"])
        blocks.append(images)
    if not blocks:
        raise FileNotFoundError(f"no */{EMBEDDINGS_NAME} under {root}: caption it with --embeddings first")
    if len(scorers) > 1:
        raise ValueError(f"{root} mixes embeddings of several scorers ({sorted(scorers)}): they are not comparable")
    return EmbeddingIndex(keys, np.concatenate(blocks), paths, texts, scorers.pop())


def top_k(index: EmbeddingIndex, query: np.ndarray, k: int) -> list[Hit]:
    """The k images most similar to an L2-normalised query embedding, best first."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    scores = index.images @ query.astype(np.float32)
    k = min(k, len(scores))
    best = np.argpartition(-scores, k - 1)[:k]
    best = best[np.argsort(-scores[best], kind="stable")]
    return [Hit(float(scores[i]), index.keys[i], index.paths[i], index.texts[i]) for i in best]


def search(out_dir: str | Path, query: str, k: int = 10, scorer=None, device: str = "auto") -> list[Hit]:
    """Images of out_dir best matching query: a text, or the path of an image (finds similar images).

    ``scorer``: a loaded scorer or a name; by default the one the embeddings were made with.
    """
    index = load_index(out_dir)
    if scorer is None or isinstance(scorer, str):
        from capfleet.models import load_scorer

        scorer = load_scorer(scorer or index.scorer, device=device)
    if Path(query).is_file():
        from PIL import Image

        with Image.open(query) as image:
            embedding = scorer.embed_images([image.convert("RGB")])[0]
    else:
        embedding = scorer.embed_texts([query])[0]
    return top_k(index, embedding.cpu().numpy(), k)
