"""What each filter costs: images/s and images per CPU-second, alone and all together.

    python benchmarks/bench_filters.py [--images 64] [--workers 2] [--watermark-model M.onnx]

Writes photo-like 640x480 JPEGs (bench_pipeline's generator; `--text-fraction` of them get a
caption-like text overlay, so OCR's recognition step runs as often as on web images with
memes and product shots), then runs `run_caption` with `--captioner none` and with the built-in
captioner + scorer, once with no filter, once per filter alone and once with all of them.

"per core" is images per CPU-second of the whole process (user + system time of every thread):
it is what one core delivers, and it barely moves when other processes share the machine,
unlike wall-clock images/s (also printed, with the load average). ONNX Runtime and torch use
one thread per call; the reader threads (`--workers`) are the parallelism.

The watermark model is a stand-in (a 4-layer CNN at 256x256, exported here) unless
`--watermark-model` gives a real one, e.g. LAION's detector exported as in docs/filters.md.
`--resolve-hashes N` also times the dedup resolve step on N random hashes (launcher side).
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

from PIL import Image, ImageDraw, ImageFont  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_pipeline import make_images  # noqa: E402

from capfleet.config import RunConfig  # noqa: E402
from capfleet.runners.lifecycle import run_caption
from capfleet.runners.models import load_models  # noqa: E402
from capfleet.stages.filters.dedup import resolve_duplicates  # noqa: E402

WORDS = ["SALE", "NEW", "FREE SHIPPING", "ORIGINAL", "LIMITED", "2024", "BEST PRICE", "HOME", "SHOP NOW"]


def add_text(paths: list[Path], fraction: float, seed: int = 0) -> None:
    rng = random.Random(seed)
    font = ImageFont.load_default(size=36)
    for path in rng.sample(paths, round(len(paths) * fraction)):
        image = Image.open(path).convert("RGB")
        draw = ImageDraw.Draw(image)
        draw.text((rng.randint(10, 200), rng.randint(10, 400)), " ".join(rng.sample(WORDS, 2)), fill="white", font=font)
        image.save(path, quality=90)


def stand_in_watermark_model(path: Path) -> str:
    import torch

    torch.manual_seed(0)
    layers, channels = [], 3
    for width in (16, 32, 64, 128):
        layers += [torch.nn.Conv2d(channels, width, 3, stride=2, padding=1), torch.nn.ReLU()]
        channels = width
    net = torch.nn.Sequential(*layers, torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(128, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            torch.nn.Sequential(net, torch.nn.Sigmoid()), torch.zeros(1, 3, 256, 256), str(path),
            input_names=["image"], output_names=["watermark"], dynamic_axes={"image": {0: "n"}}, dynamo=False,
        )  # fmt: skip
    return str(path)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed_run(images: Path, out: Path, captioner: str, models, workers: int, **filters) -> tuple[float, float, int]:
    """(images/s wall, images per CPU-second, images filtered)."""
    scorer = "builtin" if captioner != "none" else "none"
    config = RunConfig(
        inputs=[str(images)], output=str(out), captioner=captioner, scorer=scorer, candidates=3,
        workers=workers, progress=False, shard_size=1000, **filters,
    )  # fmt: skip
    wall, cpu = time.perf_counter(), cpu_seconds()
    summary = run_caption(config, models=models)
    wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
    return summary.stats.seen / wall, summary.stats.seen / cpu, summary.stats.filtered


def time_resolve(count: int) -> None:
    """Launcher-side resolve on random hashes: speed, then (traced, so separately) memory."""
    import tracemalloc

    rng = random.Random(0)
    records = [
        {"key": f"{i:09d}", "sha256": f"{rng.getrandbits(256):064x}", "phash": f"{rng.getrandbits(64):016x}"}
        for i in range(count)
    ]
    started = time.perf_counter()
    found = sum(1 for _ in resolve_duplicates(records, 8, count))
    seconds = time.perf_counter() - started
    sample = records[: max(1, count // 10)]
    tracemalloc.start()
    _ = list(resolve_duplicates(sample, 8, count))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(
        f"\nresolve (launcher): {count} random hashes, distance 8: {seconds:.2f} s "
        f"({count / seconds:,.0f} hashes/s), about {peak / len(sample):.0f} bytes/image, {found} duplicates"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--text-fraction", type=float, default=0.25)
    parser.add_argument("--watermark-model", default=None)
    parser.add_argument("--captioners", default="none,builtin")
    parser.add_argument("--resolve-hashes", type=int, default=200_000)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        paths = make_images(work / "images", args.images)
        add_text(paths, args.text_fraction)
        watermark = args.watermark_model or stand_in_watermark_model(work / "watermark.onnx")
        cases = {
            "no filter": {},
            "size": {"min_side": 64, "max_aspect_ratio": 4.0},
            "dedup near (hash + resolve)": {"dedup": "near"},
            "watermark (ONNX)": {"watermark_model": watermark, "watermark_threshold": 0.99},
            "OCR text area": {"max_text_area": 0.5},
            "NSFW (NudeNet)": {"nsfw_threshold": 0.9},
        }
        cases["all together"] = {k: v for case in list(cases.values()) for k, v in case.items()}
        print(f"{args.images} photo-like 640x480 JPEGs ({args.text_fraction:.0%} with text), workers={args.workers}, "
              f"{os.cpu_count()} cores, load average before: {os.getloadavg()[0]:.2f}")  # fmt: skip
        print("\n| captioner | filters | images/s (wall) | images per CPU-s (per core) | filtered |")
        print("|---|---|---|---|---|")
        for captioner in args.captioners.split(","):
            models = None
            if captioner != "none":
                models = load_models(RunConfig(inputs=["x"], output="y", captioner=captioner, scorer=captioner))
            # Warm-up: load every filter model once (they are cached per process) and touch the files.
            timed_run(
                work / "images", work / f"warm-{captioner}", captioner, models, args.workers, **cases["all together"]
            )
            for index, (label, filters) in enumerate(cases.items()):
                out = work / f"out-{captioner}-{index}"
                wall, per_cpu, filtered = timed_run(work / "images", out, captioner, models, args.workers, **filters)
                print(f"| {captioner} | {label} | {wall:.1f} | {per_cpu:.1f} | {filtered} |")
        print(f"\nload average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.resolve_hashes:
        time_resolve(args.resolve_hashes)


if __name__ == "__main__":
    main()
