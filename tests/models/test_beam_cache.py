"""Beam search over capfleet's own model reorders only the self-attention keys, and says the same as HF's default."""

from __future__ import annotations

from PIL import Image

from capfleet.builtin import MODEL_DIR
from capfleet.modeling.model import CapfleetCaptionerModel
from capfleet.models.captioner import HFCaptioner
from capfleet.synth import generate_synthetic_dataset


def test_beams_keep_their_images_cross_attention_keys(tmp_path, monkeypatch):
    generate_synthetic_dataset(24, tmp_path / "scenes", seed=5, size=64, progress=False)
    images = [Image.open(path).convert("RGB") for path in sorted((tmp_path / "scenes").rglob("*.png"))]
    captioner = HFCaptioner.load(str(MODEL_DIR), device="cpu", dtype="float32", decoding="beam")
    calls = []
    own = CapfleetCaptionerModel._reorder_cache
    monkeypatch.setattr(CapfleetCaptionerModel, "_reorder_cache", lambda *a: calls.append(1) or own(*a))
    fast = captioner.generate(images, 3)
    assert calls  # beam search went through the model's own reorder

    def hf_default(self, cache, beam_idx):  # both caches follow the beams
        cache.reorder_cache(beam_idx)
        return cache

    monkeypatch.setattr(CapfleetCaptionerModel, "_reorder_cache", hf_default)
    assert fast == captioner.generate(images, 3)
    assert all(len(candidates) >= 2 for candidates in fast)
