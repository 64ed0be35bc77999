"""End to end with real model code: tiny random-weight BLIP, GIT, ViT-GPT2 and CLIP checkpoints.

Random weights say nonsense, so these check structure and ranking, never words.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from capfleet.config import ConfigError, RunConfig
from capfleet.models.scorer import HFScorer
from capfleet.runners.lifecycle import run_caption
from capfleet.stages.decode import decode_image
from tests.image_zoo import write_noise_images
from tests.pipeline.helpers import load_with_datasets, read_errors, read_rows


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    write_noise_images(folder, 6)
    return folder


def config(inputs, out, captioner, scorer="none", **overrides) -> RunConfig:
    values = {
        "captioner": str(captioner),
        "scorer": str(scorer),
        "candidates": 3,
        "max_new_tokens": 6,
        "batch_size": 4,
        "workers": 2,
        "shard_size": 4,
        "progress": False,
    }
    values.update(overrides)
    return RunConfig(inputs=[str(i) for i in inputs], output=str(out), **values)


def test_blip_with_clip_keeps_the_best_scored_candidate(images, tmp_path, tiny_blip, tiny_clip):
    # float32: the stored scores are compared with the scorer's own to 1e-4 (bf16 moves them ~1e-3)
    summary = run_caption(config([images], tmp_path / "out", tiny_blip, tiny_clip, dtype="float32"))
    assert summary.stats.captioned == 6 and summary.stats.failed == 0
    rows = read_rows(tmp_path / "out")
    scorer = HFScorer.load(str(tiny_clip), device="cpu", dtype="float32")
    for row in rows:
        assert 1 <= len(row["candidates"]) <= 3
        assert len(row["scores"]) == len(row["candidates"])
        assert row["text"] == row["candidates"][row["scores"].index(max(row["scores"]))]
        assert row["captioner"] == str(tiny_blip) and row["scorer"] == str(tiny_clip)
        # The stored scores are what the scorer itself says about this image and these texts.
        image, _ = decode_image(Path(row["source"]).read_bytes(), 89_478_485, min_side=32)
        (direct,) = scorer.score([image], [row["candidates"]]).scores
        assert direct == pytest.approx(row["scores"], abs=1e-4)
    dataset = load_with_datasets(tmp_path / "out")
    assert len(dataset) == 6 and isinstance(dataset[0]["text"], str)


def test_sampling_is_reproducible_with_the_same_seed(images, tmp_path, tiny_blip):
    first = run_caption(config([images], tmp_path / "a", tiny_blip, seed=7))
    run_caption(config([images], tmp_path / "b", tiny_blip, seed=7))
    assert first.stats.captioned == 6
    rows_a, rows_b = read_rows(tmp_path / "a"), read_rows(tmp_path / "b")
    assert [r["candidates"] for r in rows_a] == [r["candidates"] for r in rows_b]


def test_beam_rows_do_not_depend_on_batch_size_or_workers(images, tmp_path, tiny_blip, tiny_clip):
    run_caption(config([images], tmp_path / "a", tiny_blip, tiny_clip, decoding="beam", batch_size=1, workers=1))
    run_caption(config([images], tmp_path / "b", tiny_blip, tiny_clip, decoding="beam", batch_size=4, workers=3))
    rows_a, rows_b = read_rows(tmp_path / "a"), read_rows(tmp_path / "b")
    assert [(r["key"], r["text"], r["candidates"]) for r in rows_a] == [
        (r["key"], r["text"], r["candidates"]) for r in rows_b
    ]
    for a, b in zip(rows_a, rows_b, strict=True):
        assert a["scores"] == pytest.approx(b["scores"], abs=1e-4)


def test_vit_gpt2_without_scorer_keeps_the_first_candidate(images, tmp_path, tiny_vit_gpt2):
    run_caption(config([images], tmp_path / "out", tiny_vit_gpt2))
    rows = read_rows(tmp_path / "out")
    assert len(rows) == 6
    assert all(row["text"] == row["candidates"][0] and row["scores"] == [] for row in rows)


def test_git_and_blip_take_a_prompt(images, tmp_path, tiny_git, tiny_blip):
    for name, model in (("git", tiny_git), ("blip", tiny_blip)):
        run_caption(config([images], tmp_path / name, model, prompt="a photo of"))
        rows = read_rows(tmp_path / name)
        assert len(rows) == 6
        # The prompt conditions every candidate: generation continues it (uncased tokenizers lower-case it).
        assert all(c.startswith("a photo of") for row in rows for c in row["candidates"]), (name, rows[0])


def test_prompt_for_a_model_without_text_input_is_refused(images, tmp_path, tiny_vit_gpt2):
    with pytest.raises(ConfigError, match="takes no prompt"):
        run_caption(config([images], tmp_path / "out", tiny_vit_gpt2, prompt="a photo of"))


def test_chat_vlm_returns_only_the_answer(images, tmp_path, tiny_smolvlm, tiny_clip):
    run_caption(config([images], tmp_path / "out", tiny_smolvlm, tiny_clip, prompt="Describe the image.", limit=2))
    rows = read_rows(tmp_path / "out")
    assert len(rows) == 2
    assert all("Describe the image." not in c and "Assistant" not in c for row in rows for c in row["candidates"])


def test_a_failing_batch_is_retried_image_by_image(tmp_path, tiny_vit_gpt2, monkeypatch):
    """One image the model chokes on costs one error record, not its whole batch."""
    from PIL import Image

    from capfleet.models.captioner import HFCaptioner

    write_noise_images(tmp_path / "imgs", 5)
    Image.new("RGB", (48, 40), (255, 0, 0)).save(tmp_path / "imgs" / "img-002-red.png")
    real = HFCaptioner.generate

    def choke_on_red(self, batch_images, *args, **kwargs):
        if any(image.getpixel((5, 5)) == (255, 0, 0) for image in batch_images):
            raise RuntimeError("CUDA out of memory")
        return real(self, batch_images, *args, **kwargs)

    monkeypatch.setattr(HFCaptioner, "generate", choke_on_red)
    summary = run_caption(config([tmp_path / "imgs"], tmp_path / "out", tiny_vit_gpt2, batch_size=4))
    assert (summary.stats.captioned, summary.stats.failed) == (5, 1)
    errors = read_errors(tmp_path / "out")
    assert [e["source"].rsplit("/", 1)[1] for e in errors] == ["img-002-red.png"]
    assert "CUDA out of memory" in errors[0]["error"]


def test_preloaded_models_follow_the_runs_decoding_settings(images, tmp_path, tiny_blip):
    """Models loaded once (Beam workers, benchmarks) still decode as each run asks."""
    from capfleet.runners.models import load_models

    models = load_models(config([images], tmp_path / "unused", tiny_blip, max_new_tokens=30))
    run_caption(config([images], tmp_path / "a", tiny_blip, decoding="beam", max_new_tokens=3), models=models)
    run_caption(config([images], tmp_path / "b", tiny_blip, decoding="beam", max_new_tokens=3))
    assert [r["candidates"] for r in read_rows(tmp_path / "a")] == [r["candidates"] for r in read_rows(tmp_path / "b")]


def test_siglip_style_scorer_ranks_candidates(images, tmp_path, tiny_blip, tiny_siglip):
    run_caption(config([images], tmp_path / "out", tiny_blip, tiny_siglip, limit=3))
    rows = read_rows(tmp_path / "out")
    assert len(rows) == 3
    assert all(len(r["scores"]) == len(r["candidates"]) and r["scorer"] == str(tiny_siglip) for r in rows)
    assert all(r["text"] == r["candidates"][r["scores"].index(max(r["scores"]))] for r in rows)
