"""A sampled image's candidates depend on (seed, image key, settings) only: never on the batch
size, its batch neighbours, an image-by-image retry or the runner; and sampling really samples."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from capfleet.config import RunConfig
from capfleet.decoding import DecodingOptions
from capfleet.models import load_captioner
from capfleet.models.captioner import HFCaptioner
from capfleet.models.sampling import PerImageNucleusSampler, image_seed
from capfleet.runners.lifecycle import run_caption
from capfleet.synth.writer import generate_synthetic_dataset
from tests.image_zoo import write_noise_images
from tests.pipeline.helpers import read_rows


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    write_noise_images(folder, 8)
    return folder


def config(images, out, captioner, **overrides) -> RunConfig:
    values = {"captioner": str(captioner), "scorer": "none", "candidates": 3, "max_new_tokens": 6}
    values |= {"shard_size": 8, "workers": 2, "progress": False, **overrides}
    return RunConfig(inputs=[str(images)], output=str(out), **values)


@pytest.fixture(scope="module")
def one_by_one(images, tiny_blip, tmp_path_factory) -> list[tuple]:
    """The rows of a local run at batch size 1: what every other run must reproduce."""
    out = tmp_path_factory.mktemp("batch1") / "out"
    run_caption(config(images, out, tiny_blip, batch_size=1))
    rows = sampled(out)
    assert len(rows) == 8 and any(len(candidates) > 1 for _, _, candidates in rows)
    return rows


def sampled(out: Path) -> list[tuple]:
    return sorted((row["key"], row["text"], tuple(row["candidates"])) for row in read_rows(out))


def fail_every_batch(monkeypatch) -> list[int]:
    """Every multi-image batch raises, so the image-by-image retry path captions all of it."""
    real, failed = HFCaptioner.generate, []

    def flaky(self, batch_images, *args, **kwargs):
        if len(batch_images) > 1:
            failed.append(len(batch_images))
            raise RuntimeError("CUDA out of memory")
        return real(self, batch_images, *args, **kwargs)

    monkeypatch.setattr(HFCaptioner, "generate", flaky)
    return failed


@pytest.mark.parametrize(("batch_size", "inject_failure"), [(3, False), (8, False), (3, True), (8, True)])
def test_local_rows_do_not_depend_on_batch_size_or_retries(
    images, one_by_one, tmp_path, tiny_blip, monkeypatch, batch_size, inject_failure
):
    failed = fail_every_batch(monkeypatch) if inject_failure else []
    run_caption(config(images, tmp_path / "many", tiny_blip, batch_size=batch_size))
    assert bool(failed) == inject_failure
    assert sampled(tmp_path / "many") == one_by_one


@pytest.mark.parametrize(("batch_size", "inject_failure"), [(3, False), (8, True)])
def test_beam_rows_equal_local_rows_at_other_batch_sizes(
    images, one_by_one, tmp_path, tiny_blip, monkeypatch, batch_size, inject_failure
):
    pytest.importorskip("apache_beam")
    from capfleet.runners.beam import run_beam

    failed = fail_every_batch(monkeypatch) if inject_failure else []
    run_beam(config(images, tmp_path / "beam", tiny_blip, batch_size=batch_size))
    assert bool(failed) == inject_failure
    assert sampled(tmp_path / "beam") == one_by_one


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("scenes")
    generate_synthetic_dataset(6, folder, seed=11, size=64, shard_size=6, progress=False)
    return folder


def test_sampling_differs_from_greedy_and_from_another_seed(scenes, tmp_path):
    """Candidates are deduplicated, so a run collapsed to greedy decoding would keep one each."""
    run_caption(config(scenes, tmp_path / "seed0", "builtin", candidates=4, max_new_tokens=12, seed=0))
    run_caption(config(scenes, tmp_path / "seed1", "builtin", candidates=4, max_new_tokens=12, seed=1))
    rows = read_rows(tmp_path / "seed0")
    assert len(rows) == 6 and all(len(row["candidates"]) >= 2 for row in rows)

    captioner = load_captioner("builtin", device="cpu", max_new_tokens=12)

    pictures = [Image.open(row["source"]).convert("RGB") for row in rows]
    with torch.no_grad():
        ids = captioner.model.generate(**captioner.processor(images=pictures, return_tensors="pt"), max_new_tokens=12)
    greedy = captioner.tokenizer.batch_decode(ids, skip_special_tokens=True)
    assert all({" ".join(g.split())} != set(row["candidates"]) for g, row in zip(greedy, rows, strict=True))

    other = {row["key"]: row["candidates"] for row in read_rows(tmp_path / "seed1")}
    differing = sum(other[row["key"]] != row["candidates"] for row in rows)
    assert differing >= 5, differing


@pytest.mark.parametrize("decoding", ["sample", "beam"])
def test_left_padded_chat_vlm_batches_match_single_images(tiny_smolvlm, decoding):
    """Images split into different numbers of tiles give prompts of different lengths, so a batch is
    left-padded; each image's candidates still equal those it gets alone."""
    captioner = load_captioner(str(tiny_smolvlm), device="cpu", max_new_tokens=5)
    captioner.processor.image_processor.do_image_splitting = True
    captioner.processor.image_processor.size = {"longest_edge": 1024}  # up to 2x2 tiles of 512 px, plus a global view
    pictures = [
        Image.new("RGB", size, colour)
        for size, colour in [((300, 90), "red"), ((64, 64), "blue"), ((90, 300), "green")]
    ]
    inputs, _ = captioner.model_inputs(pictures, None)
    assert (inputs["attention_mask"] == 0).sum(dim=1).tolist().count(0) < len(pictures)  # some rows are padded
    options = DecodingOptions(decoding, 0.9, 5)
    seeds = [image_seed(3, f"{index:09d}") for index in range(len(pictures))]
    alone = [captioner.generate([p], 3, seeds=[s], options=options)[0] for p, s in zip(pictures, seeds, strict=True)]
    assert captioner.generate(pictures, 3, seeds=seeds, options=options) == alone


def test_per_image_sampler_draws_from_the_nucleus_distribution():
    """Frequencies over many rows match the softmax renormalised over the top-p nucleus."""
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    sampler = PerImageNucleusSampler(list(range(2000)), 2, top_p=0.9)  # nucleus: the first three tokens
    chosen = sampler(torch.zeros(4000, 1, dtype=torch.long), probs.log().repeat(4000, 1)).argmax(dim=-1)
    frequencies = torch.bincount(chosen, minlength=4) / 4000
    torch.testing.assert_close(frequencies, torch.tensor([0.5, 0.3, 0.15, 0.0]) / 0.95, atol=0.025, rtol=0)
