"""Batch size chosen by measurement (`--batch-size auto`) and the `capfleet bench` table.

Users guess batch sizes. Rows no longer depend on the batch size (each image samples from its
own seed), so capfleet may pick it: on CUDA the largest batch that fits, found by halving on
out-of-memory; on CPU the batch with the best measured images/s. The answer is cached per
model, device, dtype and decoding settings under the user's cache folder, so the search runs
once per machine and model, not once per run.

Timing uses probe images at the model's input size: captioning cost depends on the model and
the number of pixels it sees, not on what the picture shows.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

log = logging.getLogger("capfleet")
CPU_BATCH_SIZES = (1, 2, 4, 8, 16)
CUDA_START = 256
DEFAULT_BATCH_SIZE = 8
# Below this many pending images the search costs more than it can save.
MIN_IMAGES_TO_TUNE = 200


def probe_images(side: int, count: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 255, (side, side, 3), dtype=np.uint8)) for _ in range(count)]


def time_batch(captioner, scorer, images: list, candidates: int, options=None) -> float:
    """Seconds for one model call on `images`: generate the candidates, then score them."""
    started = time.perf_counter()
    texts = captioner.generate(images, candidates, None, options=options)
    if scorer is not None:
        scorer.score(images, [t or ["a picture"] for t in texts])
    return time.perf_counter() - started


def measure(
    captioner, scorer, batch_sizes: Sequence[int], candidates: int, options=None, repeats: int = 1
) -> dict[int, float]:
    """images/s per batch size (best of `repeats`, after one warm-up call per size)."""
    side = captioner.input_size()
    rates: dict[int, float] = {}
    for size in batch_sizes:
        images = probe_images(side, size)
        time_batch(captioner, scorer, images, candidates, options)  # warm-up: allocator, kernels
        best = min(time_batch(captioner, scorer, images, candidates, options) for _ in range(repeats))
        rates[size] = size / best
    return rates


def best_cpu_batch(rates: dict[int, float], gain: float = 1.05) -> int:
    """The smallest batch within `gain` of the best rate: larger batches only add latency and memory."""
    top = max(rates.values())
    return min(size for size, rate in rates.items() if rate * gain >= top)


def largest_that_fits(try_batch: Callable[[int], None], start: int = CUDA_START) -> int:
    """Halve from `start` until one batch runs without CUDA out-of-memory; then halve once more.

    The margin covers captions longer than the probe's and memory the scorer and decoding
    threads take later; an out-of-memory batch during the run is still retried image by image.
    """
    import torch

    size = start
    while size >= 1:
        try:
            try_batch(size)
            return max(1, size // 2)
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            size //= 2
    return 1


def _cache_file() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "capfleet" / "batch-sizes.json"


def _cache_key(captioner, scorer, candidates: int, options) -> str:
    import torch

    device = captioner.device
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu x{torch.get_num_threads()}"
    decoding = f"{options.decoding}/{options.max_new_tokens}" if options is not None else "default"
    scorer_name = scorer.name if scorer is not None else "none"
    return f"{captioner.name}|{scorer_name}|{where}|{captioner.dtype}|{candidates}|{decoding}"


def _read_cache() -> dict:
    try:
        return json.loads(_cache_file().read_text())
    except (OSError, ValueError):
        return {}


def _write_cache(key: str, size: int) -> None:
    try:
        path = _cache_file()
        path.parent.mkdir(parents=True, exist_ok=True)
        cache = {**_read_cache(), key: size}
        temp = path.with_suffix(f".{os.getpid()}.tmp")
        temp.write_text(json.dumps(cache, indent=1, sort_keys=True))
        os.replace(temp, path)
    except OSError as exc:  # a read-only home must not stop a run
        log.debug("cannot cache the batch size: %s", exc)


def choose_batch_size(
    captioner,
    scorer,
    candidates: int,
    options,
    pending_images: int,
    before_measuring: Callable[[], object] | None = None,
) -> int:
    """`--batch-size auto`: cached answer, else measured (CPU) or searched (CUDA), else the default.

    Captioners that are not a local torch model (an HTTP endpoint, vLLM's own scheduler) keep
    the default: their batch is only how many images are handed over at once. `before_measuring`
    runs just before a CPU measurement (the run's helper processes finish loading: their load
    would slow what is timed).
    """
    from capfleet.models.captioner import HFCaptioner

    if not isinstance(captioner, HFCaptioner):
        return DEFAULT_BATCH_SIZE
    key = _cache_key(captioner, scorer, candidates, options)
    cached = _read_cache().get(key)
    if isinstance(cached, int) and cached >= 1:
        log.info("batch size %d (auto, cached for this model and device)", cached)
        return cached
    if captioner.device.type == "cuda":
        side = captioner.input_size()
        size = largest_that_fits(lambda n: time_batch(captioner, scorer, probe_images(side, n), candidates, options))
        reason = "largest that fits, halved for headroom"
    elif pending_images >= MIN_IMAGES_TO_TUNE:
        if before_measuring is not None:
            before_measuring()
        rates = measure(captioner, scorer, CPU_BATCH_SIZES, candidates, options)
        size = best_cpu_batch(rates)
        shown = ", ".join(f"{batch}: {rate:.2f}" for batch, rate in rates.items())
        reason = f"best measured images/s ({shown})"
    else:
        log.info("batch size %d (auto: %d images are too few to measure)", DEFAULT_BATCH_SIZE, pending_images)
        return DEFAULT_BATCH_SIZE
    _write_cache(key, size)
    log.info("batch size %d (auto: %s)", size, reason)
    return size
