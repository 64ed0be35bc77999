"""What each way of validating an image costs, next to the cost of copying its bytes.

Why: a model-free run (`--captioner none`) is a copy with validation; the issue asks for >= 0.9x
a plain copy, so validation has to cost about a tenth of the copy. This times, per image, in one
thread and interleaved: copying the bytes into a tar member, then each candidate check, and says
which of them catch a truncated JPEG, a truncated PNG and a non-image:

* full decode (`Image.open(...).load()`);
* capfleet's model-free check today (`decode_image` at CHECK_ONLY_SIDE: JPEG `draft` at 1/8 scale);
* Pillow `verify()` (no pixels; for PNG it checks the chunk CRCs);
* what a model-free run does now: `capfleet.stages.structure.whole_image`, no Image.open (JPEG: SOI,
  marker segments up to the scan, EOI at the end; PNG: every chunk whole with its CRC, IHDR first,
  IEND last), decoding only what that cannot prove whole.

    python benchmarks/bench_checks.py [--images 200 --repeats 3]
"""

from __future__ import annotations

import argparse
import functools
import io
import os
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_pipeline import make_images  # noqa: E402

from capfleet.runners.shard_processor import CHECK_ONLY_SIDE  # noqa: E402
from capfleet.stages.decode import decode, decode_image  # noqa: E402

MAX_PIXELS = 89_478_485


def verify(data: bytes) -> None:
    with Image.open(io.BytesIO(data)) as image:
        image.verify()


def full_decode(data: bytes) -> None:
    with Image.open(io.BytesIO(data)) as image:
        image.load()


CHECKS = {
    "full decode (open + load)": full_decode,
    f"decode_image at {CHECK_ONLY_SIDE} px (model-free runs before: JPEG draft 1/8)": lambda d: decode_image(
        d, MAX_PIXELS, CHECK_ONLY_SIDE
    ),
    "Pillow verify()": verify,
    "decode(pixels=False) (model-free runs now: structure walk, size from it)": lambda d: decode(
        d, MAX_PIXELS, CHECK_ONLY_SIDE, pixels=False
    ),
}


def tar_copy(samples: list[bytes]) -> None:
    with tarfile.open(fileobj=io.BytesIO(), mode="w") as archive:
        for index, data in enumerate(samples):
            info = tarfile.TarInfo(f"{index:09d}.jpg")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


def check_all(check, samples: list[bytes]) -> None:
    for data in samples:
        check(data)


def catches(check, data: bytes) -> bool:
    try:
        check(data)
    except Exception:  # noqa: BLE001 - any failure is a rejection
        return True
    return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temp:
        jpegs = [path.read_bytes() for path in make_images(Path(temp), args.images)]
    pngs = []
    for data in jpegs[: max(1, args.images // 4)]:
        buffer = io.BytesIO()
        Image.open(io.BytesIO(data)).save(buffer, "PNG")
        pngs.append(buffer.getvalue())
    print(f"load average {os.getloadavg()[0]:.1f}; {len(jpegs)} 640x480 JPEGs (q90), {len(pngs)} PNGs, one thread")
    cases = {"copy into a tar": tar_copy} | {
        name: functools.partial(check_all, check) for name, check in CHECKS.items()
    }
    times = {(name, kind): [] for name in cases for kind in ("jpeg", "png")}
    for _ in range(args.repeats):  # interleaved: a busy spell on a shared machine hits every case
        for name, run in cases.items():
            for kind, samples in (("jpeg", jpegs), ("png", pngs)):
                started = time.perf_counter()
                run(samples)
                times[name, kind].append((time.perf_counter() - started) / len(samples))
    bad = {
        "truncated JPEG": jpegs[0][: len(jpegs[0]) * 6 // 10],
        "truncated PNG": pngs[0][: len(pngs[0]) * 6 // 10],
        "not an image": b"just some text, not an image\n" * 20,
    }
    copy = {kind: min(times["copy into a tar", kind]) for kind in ("jpeg", "png")}
    print("\n| check | JPEG us/image | x copy | PNG us/image | x copy | " + " | ".join(bad) + " |")
    print("|---|---:|---:|---:|---:|" + "---|" * len(bad))
    for name in cases:
        jpeg, png = min(times[name, "jpeg"]), min(times[name, "png"])
        caught = (
            ["-"] * len(bad)
            if name not in CHECKS
            else ["yes" if catches(CHECKS[name], d) else "NO" for d in bad.values()]
        )
        print(f"| {name} | {jpeg * 1e6:.0f} | {jpeg / copy['jpeg']:.2f} | {png * 1e6:.0f} | {png / copy['png']:.2f} | "
              + " | ".join(caught) + " |")  # fmt: skip
    print(f"\n(fastest of {args.repeats} interleaved repeats; load average now {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
