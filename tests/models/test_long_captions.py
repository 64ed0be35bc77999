"""Ranking captions longer than the scorer reads: sentence chunks, never silent truncation."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from capfleet.config import RunConfig
from capfleet.models.scorer import HFScorer
from capfleet.models.text_chunks import text_chunks
from capfleet.runners.lifecycle import run_caption
from tests.pipeline.helpers import read_rows

SENTENCE = "A small brown dog sits on a green mat in front of a large white house with a red door."
LONG = (  # about 100 CLIP tokens, and no repetition loop (hygiene would drop one)
    f"{SENTENCE} Behind the house, tall pine trees sway under a grey winter sky. A child in a yellow coat"
    " waves from an upstairs window while an old man rakes leaves beside a rusty bicycle. Smoke curls from"
    " the brick chimney, and a black cat watches two sparrows on the fence near the mailbox."
)


@pytest.fixture(scope="module")
def scorer(tiny_clip) -> HFScorer:
    return HFScorer.load(str(tiny_clip), device="cpu")


@pytest.fixture(scope="module")
def image() -> Image.Image:
    return Image.new("RGB", (32, 32), (180, 40, 40))


def _tokens(scorer: HFScorer, text: str) -> int:
    return len(scorer.tokenizer(text)["input_ids"])


def _direction(scorer: HFScorer, text: str) -> np.ndarray:
    """A caption's embedding as `--embeddings` keeps it: its chunks' mean, re-normalised."""
    mean = scorer.embed_texts(text_chunks(text, scorer.tokenizer, scorer.max_text_tokens)).mean(0)
    return (mean / mean.norm()).numpy()


def test_a_difference_past_token_77_changes_the_score(scorer, image):
    first, twin = LONG + " The sky above is blue.", LONG + " Two cats sleep on the roof."
    assert scorer.max_text_tokens == 77 and _tokens(scorer, first) > 77
    # Truncated, the two are the same text: the scorer used to give them the same score.
    truncated = scorer.embed_texts([first, twin])
    assert truncated[0].tolist() == pytest.approx(truncated[1].tolist(), abs=1e-6)
    scored = scorer.score([image], [[first, twin]])
    (scores,), (chunked,) = scored.scores, scored.chunked
    assert scores[0] != pytest.approx(scores[1], abs=1e-6)
    assert chunked == [True, True]


def test_a_long_caption_scores_as_the_mean_of_its_chunks(scorer, image):
    chunks = text_chunks(LONG, scorer.tokenizer, scorer.max_text_tokens)
    assert len(chunks) > 1 and all(_tokens(scorer, chunk) <= 77 for chunk in chunks)
    assert " ".join(chunks).split() == LONG.split()  # nothing dropped, nothing reordered
    (scores,) = scorer.score([image], [[LONG]]).scores
    per_chunk = scorer.embed_texts(chunks) @ scorer.embed_images([image])[0]
    assert scores[0] == pytest.approx(float(per_chunk.mean()), abs=1e-5)


def test_short_captions_are_scored_whole(scorer, image):
    scored = scorer.score([image], [["a dog", SENTENCE]])
    (scores,), (chunked,) = scored.scores, scored.chunked
    whole = scorer.embed_texts(["a dog", SENTENCE]) @ scorer.embed_images([image])[0]
    assert scores == pytest.approx(whole.tolist(), abs=1e-5) and chunked == [False, False]


def test_a_sentence_without_stops_and_a_giant_word_are_cut_to_fit(scorer):
    run_on = " ".join(["word"] * 120)
    giant = "x" * 400
    for text in (run_on, f"a {giant} b"):
        chunks = text_chunks(text, scorer.tokenizer, 77)
        assert len(chunks) > 1 and all(_tokens(scorer, chunk) <= 77 for chunk in chunks)
    assert " ".join(text_chunks(run_on, scorer.tokenizer, 77)).split() == run_on.split()


class LongCaptioner:
    name = "tests/long"
    accepts_prompt = True
    per_image_prompts = False

    def input_size(self) -> int:
        return 32

    def encode(self, images):
        return None

    def generate(self, images, num_candidates, prompt=None, seed=None, options=None, encoding=None):
        return [[LONG, "a dog"] for _ in images]


def test_rows_record_which_candidates_were_chunked(tmp_path, scorer, image):
    (tmp_path / "in").mkdir()
    image.save(tmp_path / "in" / "x.png")
    config = RunConfig([str(tmp_path / "in")], str(tmp_path / "out"), captioner="tests/long", progress=False)
    run_caption(config, models=(LongCaptioner(), scorer))
    (row,) = read_rows(tmp_path / "out")
    assert row["candidates"] == [LONG, "a dog"] and row["chunked"] == [True, False] and len(row["scores"]) == 2


def test_score_hands_back_the_embeddings_only_when_asked(scorer, image):
    plain = scorer.score([image], [[LONG, "a dog"]])
    assert plain.image_embeds is None and plain.text_embeds is None
    full = scorer.score([image], [[LONG, "a dog"]], embeddings=True)
    assert full.scores == plain.scores and full.chunked == plain.chunked == [[True, False]]
    np.testing.assert_allclose(full.image_embeds[0], scorer.embed_images([image])[0].numpy(), atol=1e-5)
    truncated = scorer.embed_texts([LONG])[0].numpy()
    assert not np.allclose(full.text_embeds[0][0], truncated, atol=1e-3)  # the whole caption, not its start
    np.testing.assert_allclose(full.text_embeds[0][0], _direction(scorer, LONG), atol=1e-5)
    np.testing.assert_allclose(full.text_embeds[0][1], scorer.embed_texts(["a dog"])[0].numpy(), atol=1e-5)


class OnlyLongCaptioner(LongCaptioner):
    def generate(self, images, num_candidates, prompt=None, seed=None, options=None, encoding=None):
        return [[LONG] for _ in images]


def test_a_run_keeps_a_chunked_captions_embedding_as_its_chunks_mean(tmp_path, scorer, image):
    (tmp_path / "in").mkdir()
    image.save(tmp_path / "in" / "x.png")
    config = RunConfig(
        [str(tmp_path / "in")], str(tmp_path / "out"), captioner="tests/long", embeddings=True, progress=False
    )
    run_caption(config, models=(OnlyLongCaptioner(), scorer))
    (npz,) = (tmp_path / "out").glob("*/embeddings.npz")
    with np.load(npz) as arrays:
        np.testing.assert_allclose(arrays["text"][0], _direction(scorer, LONG), atol=1e-5)
