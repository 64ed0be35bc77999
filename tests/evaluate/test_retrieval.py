import pytest
import torch

from capfleet.evaluate import retrieval
from capfleet.evaluate.retrieval import retrieval_recall


def test_identity_is_perfect():
    eye = torch.eye(5)
    result = retrieval_recall(eye, eye)
    assert all(result[f"{d}_R@{k}"] == 1.0 for d in ("i2t", "t2i") for k in (1, 5, 10))
    assert result["i2t_MedR"] == result["t2i_MedR"] == 1


def test_permuted_texts_with_their_index_are_perfect_and_without_it_are_not():
    torch.manual_seed(0)
    images = torch.nn.functional.normalize(torch.randn(8, 16), dim=-1)
    perm = torch.randperm(8)
    texts = images[perm]  # text j describes image perm[j]
    assert retrieval_recall(images, texts, perm)["t2i_R@1"] == 1.0
    wrong = retrieval_recall(images, texts)  # pretend text j belongs to image j
    assert wrong["t2i_R@1"] == wrong["i2t_R@1"] == float((perm == torch.arange(8)).float().mean())


def hand_made():
    """sims[text, image]; texts 0, 1, 2 belong to images 0, 1, 2."""
    sims = torch.tensor([[0.9, 0.1, 0.2], [0.8, 0.5, 0.1], [0.3, 0.6, 0.2]])
    return torch.eye(3), sims  # image i . text j == sims[j, i]


def test_known_ranks_with_ties_counting_against():
    images, texts = hand_made()
    result = retrieval_recall(images, texts, ks=(1, 2, 3))
    # text->image ranks 0, 1, 2 ; image->text ranks 0, 1 (0.6 beats 0.5), 1 (a 0.2 tie counts against)
    assert result["t2i_R@1"] == pytest.approx(1 / 3) and result["t2i_R@2"] == pytest.approx(2 / 3)
    assert result["t2i_R@3"] == 1.0 and result["t2i_MedR"] == 2
    assert result["i2t_R@1"] == pytest.approx(1 / 3) and result["i2t_R@2"] == 1.0


def test_multi_caption_protocol_hits_if_any_caption_ranks():
    images = torch.eye(2)
    texts = torch.tensor([[0.3, 0.6], [0.9, 0.0], [0.4, 0.8], [0.2, 0.7]])  # captions 0,1 -> image 0; 2,3 -> 1
    result = retrieval_recall(images, texts, [0, 0, 1, 1], ks=(1, 2))
    assert result["i2t_R@1"] == 1.0  # each image's best own caption comes first (image 0: 0.9)
    assert result["t2i_R@1"] == 0.75  # caption 0 prefers image 1
    first_only = retrieval_recall(images, texts[[0, 2]])  # one caption each: image 0's (0.3) loses to 0.4
    assert first_only["i2t_R@1"] == 0.5 and first_only["t2i_R@1"] == 0.5


def test_matches_brute_force_ranking_in_chunks(monkeypatch):
    monkeypatch.setattr(retrieval, "CHUNK", 3)
    torch.manual_seed(1)
    images = torch.nn.functional.normalize(torch.randn(10, 8), dim=-1)
    owner = torch.arange(30) % 10
    texts = torch.nn.functional.normalize(images[owner] + 0.9 * torch.randn(30, 8), dim=-1)
    result = retrieval_recall(images, texts, owner)
    sims = images @ texts.T
    t2i = [(sims[:, j].argsort(descending=True) == owner[j]).nonzero().item() for j in range(30)]
    i2t = [
        min((sims[i].argsort(descending=True)[:, None] == (owner == i).nonzero().T).any(1).nonzero()).item()
        for i in range(10)
    ]
    for k in (1, 5, 10):
        assert result[f"t2i_R@{k}"] == pytest.approx(sum(r < k for r in t2i) / 30)
        assert result[f"i2t_R@{k}"] == pytest.approx(sum(r < k for r in i2t) / 10)


def test_collapsed_embeddings_do_not_score():
    same = torch.ones(4, 3)
    assert retrieval_recall(same, same)["i2t_R@1"] == 0.0


def test_bad_inputs():
    with pytest.raises(ValueError, match="no caption"):
        retrieval_recall(torch.eye(3), torch.eye(3)[:2], [0, 0])
    with pytest.raises(ValueError, match="text_to_image_index"):
        retrieval_recall(torch.eye(3), torch.eye(3)[:2])
    with pytest.raises(ValueError, match="outside"):
        retrieval_recall(torch.eye(2), torch.eye(2), [0, 2])
