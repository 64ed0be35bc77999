import pytest
import torch
from PIL import Image

from capfleet.evaluate.clip_score import clip_score, clip_scores, embed_images, ref_clip_scores

COLOURS = [(220, 30, 30), (30, 180, 30), (30, 30, 220), (230, 220, 20), (0, 0, 0)]


def images(n):
    return [Image.new("RGB", (40 + 7 * i, 32), COLOURS[i % len(COLOURS)]) for i in range(n)]


def test_clip_score_shape_and_range(tiny_scorer):
    captions = ["a red square", "a green square", "a blue square", "a yellow square", "black"]
    scores = clip_score(tiny_scorer, images(5), captions, batch_size=2)
    assert scores.shape == (5,)
    assert torch.all((scores >= 0) & (scores <= 2.5))
    hundred = clip_score(tiny_scorer, images(5), captions, batch_size=2, weight=100, prefix="")
    assert torch.all((hundred >= 0) & (hundred <= 100))


def test_paths_give_the_same_embeddings_as_images(tiny_scorer, tmp_path):
    ims = images(3)
    paths = []
    for i, im in enumerate(ims):
        paths.append(tmp_path / f"{i}.png")
        im.save(paths[-1])
    torch.testing.assert_close(embed_images(tiny_scorer, paths, 2), embed_images(tiny_scorer, ims, 3))
    with pytest.raises(ValueError, match="cannot read image"):
        embed_images(tiny_scorer, [tmp_path / "missing.png"])


def test_clip_and_ref_clip_formulas_on_hand_made_embeddings():
    e = torch.eye(3)
    images = torch.stack([e[0], e[0], e[0]])
    captions = torch.stack([e[0], torch.nn.functional.normalize(e[0] + e[1], dim=0), -e[0]])
    clip_s = clip_scores(images, captions)
    torch.testing.assert_close(clip_s, torch.tensor([2.5, 2.5 * 0.5**0.5, 0.0]))
    refs = torch.stack([e[0], e[1], e[0], e[2]])  # 2 references per caption (captions 0 and 1)
    ref_s = ref_clip_scores(clip_s[:2], captions[:2], refs, torch.tensor([0, 0, 1, 1]))
    best = torch.tensor([1.0, 0.5**0.5])  # best reference cosine per caption
    torch.testing.assert_close(ref_s, 2 * clip_s[:2] * best / (clip_s[:2] + best))
    with pytest.raises(ValueError, match="one caption per image"):
        clip_scores(images, captions[:2])
