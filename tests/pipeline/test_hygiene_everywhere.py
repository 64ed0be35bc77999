"""A captioner that loops gets the same caption hygiene from `capfleet caption`, `capfleet.load(...).caption`
and the service's /v1/caption: one code path drops degenerate candidates, re-samples and flags."""

from __future__ import annotations

import json
import math
import urllib.request
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import capfleet
from capfleet.cli import app
from capfleet.stages.hygiene import has_repetition_loop
from tests import tiny_models
from tests.image_zoo import write_noise_images
from tests.pipeline.helpers import read_rows
from tests.serve.helpers import serving

runner = CliRunner()


@pytest.fixture(scope="module")
def looping_blip(tmp_path_factory) -> Path:
    """The real tiny BLIP whose language head always says "cat": every caption is "cat cat cat ..."."""
    from transformers import AutoTokenizer, BlipForConditionalGeneration

    folder = tiny_models.build_blip(tmp_path_factory.mktemp("looping-blip"), tiny=True)
    model = BlipForConditionalGeneration.from_pretrained(folder)
    cat = AutoTokenizer.from_pretrained(folder).convert_tokens_to_ids("cat")
    with torch.no_grad():
        model.text_decoder.cls.predictions.bias[cat] = 1e4
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def beam_looping_blip(tmp_path_factory) -> Path:
    """A real tiny BLIP whose every next word is "cat" (p 0.3) or one of 13 others (p 0.05 each), whatever
    the image: beam search says "cat cat cat ..." (a loop), sampling mostly says something else."""
    from transformers import AutoTokenizer, BlipForConditionalGeneration

    folder = tiny_models.build_blip(tmp_path_factory.mktemp("beam-looping-blip"), tiny=True)
    model = BlipForConditionalGeneration.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    others = tokenizer.convert_tokens_to_ids("dog on red grass near the house with blue sky tree small green".split())
    head = model.text_decoder.cls.predictions
    with torch.no_grad():
        head.decoder.weight.zero_()  # the logits are the bias alone
        head.bias.fill_(-1e4)
        head.bias[others] = math.log(0.05)
        head.bias[tokenizer.convert_tokens_to_ids("cat")] = math.log(0.3)
    model.save_pretrained(folder)
    return folder


def test_degenerate_candidates_are_dropped_and_resampled_alike_by_the_cli_the_api_and_the_service(
    tmp_path, beam_looping_blip
):
    images = write_noise_images(tmp_path / "imgs", 2)  # image i is keyed as the API keys its image i
    common = {"candidates": 3, "decoding": "beam", "max_new_tokens": 12, "seed": 0}
    result = runner.invoke(
        app,
        ["caption", str(tmp_path / "imgs"), "-o", str(tmp_path / "out"), "--captioner", str(beam_looping_blip)]
        + ["--scorer", "none", "--candidates", "3", "--decoding", "beam", "--max-new-tokens", "12", "--no-progress"],
    )
    assert result.exit_code == 0, result.output
    assert "images re-sampled: 2, kept with flags: 0" in result.output  # beam looped; re-sampling did not
    cli = [row["candidates"] for row in sorted(read_rows(tmp_path / "out"), key=lambda row: row["key"])]

    model = capfleet.load(str(beam_looping_blip), scorer=None, device="cpu")
    api = model.caption([str(path) for path in images], **common)
    with serving(model, max_wait_ms=0) as url:
        served = _post_caption(url, images, common)

    assert all(result.flags == [] for result in api)
    for candidates in cli:
        assert candidates and not any(has_repetition_loop(text.split()) for text in candidates), candidates
    assert [result.candidates for result in api] == cli  # the same seeds, re-samples and drops
    assert [result.to_json() for result in api] == served


def test_a_looping_captioner_is_flagged_the_same_by_the_cli_the_api_and_the_service(tmp_path, looping_blip):
    images = write_noise_images(tmp_path / "imgs", 2)
    common = {"candidates": 3, "max_new_tokens": 12, "seed": 0}

    result = runner.invoke(
        app,
        ["caption", str(tmp_path / "imgs"), "-o", str(tmp_path / "out"), "--captioner", str(looping_blip)]
        + ["--scorer", "none", "--candidates", "3", "--max-new-tokens", "12", "--no-progress"],
    )
    assert result.exit_code == 0, result.output
    assert "images re-sampled: 2, kept with flags: 2" in result.output  # re-sampled, still looping
    cli = sorted((row["key"], row["flags"], row["candidates"]) for row in read_rows(tmp_path / "out"))

    model = capfleet.load(str(looping_blip), scorer=None, device="cpu")
    api = model.caption([str(path) for path in images], **common)

    with serving(model, max_wait_ms=0) as url:
        served = _post_caption(url, images, common)

    for flags, candidates in [(row[1], row[2]) for row in cli] + [(r.flags, r.candidates) for r in api]:
        assert "repetition" in str(flags), flags
        assert candidates and all(text.split().count("cat") >= 3 for text in candidates)
    assert [r.to_json() for r in api] == served  # the service answers what the API computes
    assert all(result.flags == ["repetition"] for result in api)


def _post_caption(url: str, images: list[Path], options: dict) -> list[dict]:
    body = json.dumps({"images": [_data_url(path) for path in images], **options}).encode()
    request = urllib.request.Request(f"{url}/v1/caption", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())["results"]


def _data_url(path: Path) -> str:
    import base64

    return "data:image/jpeg;base64," + base64.b64encode(path.read_bytes()).decode()
