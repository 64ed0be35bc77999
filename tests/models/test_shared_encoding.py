"""A capfleet model that captions and ranks is loaded once and encodes each batch once."""

from __future__ import annotations

import capfleet
from capfleet.api import CaptionModel
from capfleet.builtin import MODEL_DIR
from capfleet.models.scorer import HFScorer
from capfleet.synth import generate_synthetic_dataset


def test_the_builtin_scorer_is_the_captioners_own_model():
    model = capfleet.load("builtin", device="cpu", dtype="float32")
    assert model.scorer.model is model.captioner.model  # one copy of the weights


def test_sharing_the_encoding_changes_no_caption_or_score(tmp_path):
    generate_synthetic_dataset(6, tmp_path / "scenes", seed=3, size=64, progress=False)
    images = sorted((tmp_path / "scenes").rglob("*.png"))
    shared = capfleet.load("builtin", device="cpu", dtype="float32", batch_size=3)
    separate = CaptionModel(
        shared.captioner, HFScorer.load(str(MODEL_DIR), device="cpu", dtype="float32"), batch_size=3
    )
    assert separate.scorer.model is not shared.captioner.model
    assert shared.caption(images, candidates=4, seed=1) == separate.caption(images, candidates=4, seed=1)


def test_each_batch_is_encoded_once_for_captioning_and_ranking(tmp_path):
    """The captioner hands its encoding to generate and to the scorer: two batches, two encoder passes
    (without the hand-over, ranking would encode every batch a second time)."""
    generate_synthetic_dataset(6, tmp_path / "scenes", seed=3, size=64, progress=False)
    images = sorted((tmp_path / "scenes").rglob("*.png"))
    model = capfleet.load("builtin", device="cpu", dtype="float32", batch_size=3)
    passes = []
    hook = model.captioner.model.encoder.register_forward_hook(lambda module, args, out: passes.append(len(args[0])))
    try:
        captions = model.caption(images, candidates=4, seed=1)
    finally:
        hook.remove()
    assert len(captions) == 6 and passes == [3, 3]
