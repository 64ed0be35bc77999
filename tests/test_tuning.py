"""--batch-size auto and `capfleet bench`, on the real built-in model (and the CUDA search's halving logic)."""

from __future__ import annotations

import json
import logging

import pytest
from typer.testing import CliRunner

from capfleet.cli import app
from capfleet.decoding import DecodingOptions
from capfleet.models.registry import load_captioner, load_scorer
from capfleet.tuning import best_cpu_batch, choose_batch_size, largest_that_fits

runner = CliRunner()


def test_bench_prints_a_row_per_dtype_and_batch_and_a_recommendation():
    args = ["bench", "--captioner", "builtin", "--scorer", "builtin", "--batch-sizes", "1,2", "--candidates", "2",
            "--max-new-tokens", "8"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if line.startswith("| float") or line.startswith("| bfloat")]
    assert {row.split("|")[2].strip() for row in rows} == {"1", "2"}
    assert all(float(row.split("|")[3]) > 0 for row in rows)
    assert "recommended: --dtype " in result.output and "--batch-size " in result.output


def test_bench_refuses_bad_batch_sizes_in_one_line():
    result = runner.invoke(app, ["bench", "--batch-sizes", "4,x"])
    assert result.exit_code == 2 and "--batch-sizes must be" in result.output


def test_best_cpu_batch_prefers_the_smallest_batch_near_the_best_rate():
    assert best_cpu_batch({1: 10.0, 2: 19.0, 4: 30.0, 8: 31.0, 16: 29.0}) == 4
    assert best_cpu_batch({1: 5.0, 2: 4.0}) == 1


def test_cuda_search_halves_on_out_of_memory_then_keeps_headroom():
    torch = pytest.importorskip("torch")
    tried = []

    def try_batch(size):
        tried.append(size)
        if size > 48:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    assert largest_that_fits(try_batch, start=256) == 16
    assert tried == [256, 128, 64, 32]


def test_auto_batch_size_is_measured_once_then_cached(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    captioner, scorer = load_captioner("builtin", device="cpu"), load_scorer("builtin", device="cpu")
    options = DecodingOptions("sample", 0.9, 6)
    monkeypatch.setattr("capfleet.tuning.CPU_BATCH_SIZES", (1, 2))
    settled = []  # the run's helper processes are waited for before a measurement, not before a cached answer
    with caplog.at_level(logging.INFO, logger="capfleet"):
        first = choose_batch_size(captioner, scorer, 2, options, 10_000, before_measuring=lambda: settled.append(1))
        second = choose_batch_size(captioner, scorer, 2, options, 10_000, before_measuring=lambda: settled.append(2))
    assert first in (1, 2) and second == first
    assert settled == [1]
    assert "best measured images/s" in caplog.text and "cached" in caplog.text
    cache = json.loads((tmp_path / "capfleet" / "batch-sizes.json").read_text())
    assert list(cache.values()) == [first]
    assert choose_batch_size(captioner, scorer, 3, options, pending_images=5) == 8  # too few images to measure


def test_a_run_whose_readers_starve_the_model_says_so(tmp_path, monkeypatch, caplog):
    from capfleet.config import RunConfig
    from capfleet.runners.lifecycle import run_caption
    from capfleet.sources import files
    from tests.image_zoo import write_noise_images

    write_noise_images(tmp_path / "imgs", 2)
    real = files.fetch_item

    def slow_disk(item, **limits):
        import time

        # 4 s of waiting in all: the warning (over 10% waited) fails only if captioning 2 images took 36 s.
        time.sleep(2)
        return real(item, **limits)

    monkeypatch.setattr(files, "fetch_item", slow_disk)
    config = RunConfig(inputs=[str(tmp_path / "imgs")], output=str(tmp_path / "out"), captioner="builtin",
                       scorer="none", candidates=1, max_new_tokens=4, workers=1, progress=False)  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="capfleet"):
        run_caption(config)
    assert "the model waited for images" in caplog.text and "raise --workers, now 1" in caplog.text


def test_quantize_int8_replaces_linear_layers_and_still_captions(tmp_path):
    import torch

    from capfleet.config import RunConfig
    from capfleet.runners.models import load_models
    from tests.image_zoo import write_noise_images

    write_noise_images(tmp_path / "imgs", 3)
    args = ["caption", str(tmp_path / "imgs"), "-o", str(tmp_path / "out"), "--captioner", "builtin", "--candidates",
            "2", "--no-progress", "--device", "cpu"]  # fmt: skip
    result = runner.invoke(app, [*args, "--dtype", "float32", "--quantize", "int8"])
    assert result.exit_code == 0, result.output
    assert "captioned: 3" in result.output
    config = RunConfig(inputs=[], output="", captioner="builtin", scorer="builtin", device="cpu", dtype="float32",
                       quantize="int8")  # fmt: skip
    captioner, scorer = load_models(config)
    quantized = torch.ao.nn.quantized.dynamic.Linear
    for model in (captioner.model, scorer.model):
        assert any(isinstance(module, quantized) for module in model.modules())
        assert not any(type(module) is torch.nn.Linear for module in model.modules())


def test_quantize_int8_on_a_bf16_model_is_one_clear_line_and_writes_nothing(tmp_path):
    from tests.image_zoo import write_noise_images

    write_noise_images(tmp_path / "imgs", 1)
    args = ["caption", str(tmp_path / "imgs"), "-o", str(tmp_path / "out"), "--captioner", "builtin", "--no-progress"]
    result = runner.invoke(app, [*args, "--device", "cpu", "--dtype", "bfloat16", "--quantize", "int8"])
    assert result.exit_code == 2 and "--quantize int8 is for float32 models on a CPU" in result.output
    assert not (tmp_path / "out").exists()
