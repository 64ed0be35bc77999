"""--engine vllm without vLLM (it needs a CUDA GPU and its own torch): the clear error, request
building with a real chat VLM processor, and output parsing. The GPU path itself is checked only
where vLLM and a GPU are available."""

from __future__ import annotations

import importlib.util
from types import SimpleNamespace

import pytest
from PIL import Image
from transformers import AutoProcessor
from typer.testing import CliRunner

from capfleet.cli import app
from capfleet.decoding import DecodingOptions
from capfleet.models.engines.vllm_offline import build_requests, parse_outputs, sampling_settings
from tests.image_zoo import write_noise_images

HAS_VLLM = importlib.util.find_spec("vllm") is not None


@pytest.mark.skipif(HAS_VLLM, reason="vLLM is installed here")
def test_missing_vllm_is_one_clear_line_before_anything_is_written(tmp_path):
    write_noise_images(tmp_path / "imgs", 1)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["caption", str(tmp_path / "imgs"), "-o", str(out), "--engine", "vllm"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "--engine vllm needs vLLM" in result.output and "capfleet[vllm]" in result.output
    assert not out.exists()


def test_requests_carry_the_chat_template_and_the_image(tiny_smolvlm):
    processor = AutoProcessor.from_pretrained(tiny_smolvlm)
    images = [Image.new("RGB", (40, 30), (255, 0, 0)), Image.new("RGB", (30, 40), (0, 0, 255))]
    requests = build_requests(processor, images, ["Describe the red one.", None])
    assert [request["multi_modal_data"]["image"] for request in requests] == images
    first, second = (request["prompt"] for request in requests)
    assert "<image>" in first and "Describe the red one." in first and first.rstrip().endswith("Assistant:")
    assert "Describe this image in one detailed sentence." in second  # the chat default


def test_sampling_settings():
    sample = sampling_settings(DecodingOptions("sample", 0.8, 40), 5, seed=123)
    assert sample == {"n": 5, "temperature": 1.0, "top_p": 0.8, "max_tokens": 40, "seed": 123}
    assert sampling_settings(DecodingOptions("beam", 0.9, 20), 5, seed=1) == {
        "n": 1,
        "temperature": 0.0,
        "max_tokens": 20,
    }


def _request_output(*texts: str):
    """Shaped like vllm.RequestOutput: `.outputs` is a list of CompletionOutput with `.text`."""
    return SimpleNamespace(request_id="0", outputs=[SimpleNamespace(index=i, text=t) for i, t in enumerate(texts)])


def test_outputs_become_distinct_candidates_in_order():
    outputs = [_request_output(" a red  ball ", "", "a red ball", "a blue ball"), _request_output("x", "y", "z")]
    assert parse_outputs(outputs, 3) == [["a red ball", "a blue ball"], ["x", "y", "z"]]
    assert parse_outputs(outputs, 2)[1] == ["x", "y"]
