"""`capfleet bench`: images/s of the user's own models on the user's own machine, per setting.

The benchmarks in `benchmarks/` compare capfleet against baselines on random weights; this
command answers the question a user has before a long run: which --batch-size, --dtype and
--workers to use here. It times probe images at the model's input size (captioning cost does
not depend on what the picture shows) and photo-sized JPEG decoding per reader thread.
"""

from __future__ import annotations

import io
import math
import time
from dataclasses import dataclass

from capfleet.decoding import DecodingOptions
from capfleet.models.quantize import quantize_models
from capfleet.models.registry import load_captioner, load_scorer
from capfleet.models.runtime import auto_quantize, cpu_has_native_bf16, pick_device
from capfleet.stages.decode import decode_image
from capfleet.tuning import best_cpu_batch, measure, probe_images


@dataclass
class BenchRow:
    dtype: str
    batch_size: int
    images_per_second: float


def dtypes_to_try(device: str) -> list[str]:
    if pick_device(device).type == "cuda":
        import torch

        return ["float16", "bfloat16"] if torch.cuda.is_bf16_supported(including_emulation=False) else ["float16"]
    if cpu_has_native_bf16():
        return ["float32", "bfloat16"]
    # "auto": float32 with int8 linear layers on the CPUs where --dtype auto quantises (runtime.auto_quantize)
    return ["float32", "auto"] if auto_quantize("auto", pick_device(device)) else ["float32"]


def model_rows(
    captioner: str, scorer: str, device: str, batch_sizes: list[int], candidates: int, max_new_tokens: int
) -> tuple[list[BenchRow], int]:
    """Rows per dtype and batch size, and the captioner's input side (for the decoding probe)."""
    rows, side = [], 384
    options = DecodingOptions(max_new_tokens=max_new_tokens)  # the run defaults, at the planned length
    for dtype in dtypes_to_try(device):
        model = load_captioner(captioner, device=device, dtype=dtype)
        ranker = load_scorer(scorer, captioner=model, device=device, dtype=dtype)
        if auto_quantize(dtype, pick_device(device)):
            quantize_models(model, ranker, own_models=False)  # as a run with --dtype auto does
        rates = measure(model, ranker, batch_sizes, candidates, options, repeats=2)
        rows += [BenchRow(dtype, size, rate) for size, rate in rates.items()]
        side = model.input_size()
    return rows, side


def decode_rate(side: int, seconds: float = 1.0) -> float:
    """Photo-sized (640x480) JPEGs decoded and shrunk per second by one reader thread."""
    buffer = io.BytesIO()
    probe_images(1, 1)[0].resize((640, 480)).save(buffer, "JPEG", quality=90)
    data, count, started = buffer.getvalue(), 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        decode_image(data, max_pixels=10**9, min_side=side)
        count += 1
    return count / (time.perf_counter() - started)


def recommend(rows: list[BenchRow], per_thread: float) -> str:
    """Fastest dtype, the smallest batch near its best rate, and enough readers to keep up."""
    best_dtype = max(rows, key=lambda row: row.images_per_second).dtype
    rates = {row.batch_size: row.images_per_second for row in rows if row.dtype == best_dtype}
    batch = best_cpu_batch(rates)
    workers = max(1, math.ceil(1.25 * rates[batch] / per_thread))  # 25% headroom for slower images
    return f"--dtype {best_dtype} --batch-size {batch} --workers {workers}"
