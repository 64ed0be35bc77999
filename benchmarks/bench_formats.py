"""Input/output formats at scale, measured in one run.

(a) webdataset in -> webdataset out with `--captioner none` against a plain `tarfile` loop that
    reads the same tars, groups members by key and writes each sample with a txt and a json
    member (no image checks). Goal (issue 9): capfleet >= 0.9x the loop's samples/s.
(c) an image folder in -> parquet out with `--captioner none` against a plain loop that reads the
    same files and writes their bytes into parquet files of the same shard size with pyarrow.
    Goal (issue 25): capfleet >= 0.9x the loop's images/s.
(b) a 10,000,000-row parquet file (image column = a path, caption column) and a
    10,000,000-line file list, each captioned with `--limit 100 --captioner none` as a whole
    `capfleet caption` process: wall time and peak RSS. Goal: < 60 s and < 500 MB each
    (planning must not grow with the listing).

    python benchmarks/bench_formats.py [--tars 8 --per-tar 250] [--rows 10000000]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from capfleet.config import RunConfig  # noqa: E402
from capfleet.runners.lifecycle import run_caption  # noqa: E402
from capfleet.runners.shard_processor import CHECK_ONLY_SIDE  # noqa: E402
from capfleet.stages.decode import decode_image  # noqa: E402


def photo_like_jpeg(seed: int, size=(384, 288)) -> bytes:
    """Smooth colour fields plus mild noise: compresses like a photo (~20-40 KB), not like noise."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (6, 8, 3), dtype=np.uint8)
    image = Image.fromarray(small).resize(size, Image.Resampling.BICUBIC)
    pixels = np.asarray(image, dtype=np.int16) + rng.integers(-8, 8, (size[1], size[0], 3))
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def write_tars(folder: Path, tars: int, per_tar: int) -> list[Path]:
    folder.mkdir(parents=True)
    images = [photo_like_jpeg(seed) for seed in range(64)]
    paths = []
    for part in range(tars):
        path = folder / f"part-{part:05d}.tar"
        with tarfile.open(path, "w") as archive:
            for index in range(per_tar):
                key = f"{part:05d}{index:05d}"
                for ext, data in (("jpg", images[(part * per_tar + index) % 64]), ("txt", f"caption {key}".encode())):
                    info = tarfile.TarInfo(f"{key}.{ext}")
                    info.size = len(data)
                    archive.addfile(info, io.BytesIO(data))
        paths.append(path)
    return paths


def plain_tarfile_copy(paths: list[Path], out: Path, check: bool = False) -> int:
    """The baseline: stream each tar, group by key, write members + txt + json to a new tar;
    `check` also decodes each image as capfleet's model-free run did before it checked JPEG/PNG
    structure instead (decode_image at 8 px, one thread)."""
    out.mkdir()
    count = 0
    for path in paths:
        with tarfile.open(path, "r|") as source, tarfile.open(out / path.name, "w") as target:
            sample: dict = {}

            def flush(sample=sample) -> None:
                key = sample.pop("__key__")
                if check:
                    decode_image(sample["jpg"], 89_478_485, CHECK_ONLY_SIDE)
                caption = sample.get("txt", b"").decode()
                members = {**sample, "txt": caption.encode(), "json": json.dumps({"text": caption}).encode()}
                for ext, data in members.items():
                    info = tarfile.TarInfo(f"{key}.{ext}")
                    info.size = len(data)
                    target.addfile(info, io.BytesIO(data))
                sample.clear()

            for member in source:
                key, ext = member.name.split(".", 1)
                if sample and sample["__key__"] != key:
                    flush()
                    count += 1
                sample["__key__"] = key
                sample[ext] = source.extractfile(member).read()
            if sample:
                flush()
                count += 1
    return count


def timed_model_free_run(spec: str, out: Path, output_format: str, expected: int) -> float:
    """Seconds of one in-process `--captioner none` run (4 workers) into `output_format`."""
    config = RunConfig([spec], str(out), captioner="none", scorer="none")
    config.format, config.progress, config.workers = output_format, False, 4
    started = time.perf_counter()
    summary = run_caption(config)
    assert summary.stats.captioned == expected, summary.lines()
    return time.perf_counter() - started


def print_means(title: str, times: dict[str, list[float]], count: int, unit: str) -> dict[str, float]:
    """The mean seconds per case as a markdown table; returns them."""
    print(f"\n{title}\n\n| case | seconds | {unit}/s |\n| --- | ---: | ---: |")
    mean = {name: sum(values) / len(values) for name, values in times.items()}
    for name, seconds in mean.items():
        print(f"| {name} | {seconds:.2f} | {count / seconds:.0f} |")
    return mean


def bench_webdataset(temp: Path, tars: int, per_tar: int, repeats: int) -> None:
    paths = write_tars(temp / "tars", tars, per_tar)
    spec = str(temp / "tars" / f"part-{{00000..{tars - 1:05d}}}.tar")
    total = tars * per_tar
    plain, checked, ours = "plain tarfile read+write", "plain tarfile read+decode+write", "capfleet, captioner none"
    times: dict[str, list[float]] = {plain: [], checked: [], ours: []}
    for attempt in range(repeats):
        for name, check in ((plain, False), (checked, True)):
            started = time.perf_counter()
            assert plain_tarfile_copy(paths, temp / f"{name}-{attempt}".replace(" ", "-"), check) == total
            times[name].append(time.perf_counter() - started)
        times[ours].append(timed_model_free_run(spec, temp / f"capfleet-{attempt}", "webdataset", total))
    title = f"(a) webdataset in -> out: {tars} tars x {per_tar} samples (384x288 JPEG), {repeats} repeats, mean"
    mean = print_means(title, times, total, "samples")
    print(f"\ncapfleet / plain tarfile = {mean[plain] / mean[ours]:.2f}x (goal >= 0.9x)")
    print(f"capfleet / plain tarfile with a decode check = {mean[checked] / mean[ours]:.2f}x")


def write_big_inputs(temp: Path, rows: int) -> tuple[Path, Path]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    (temp / "imgs").mkdir(parents=True)
    for seed in range(50):
        (temp / "imgs" / f"img-{seed:03d}.jpg").write_bytes(photo_like_jpeg(seed, (64, 48)))
    names = np.array([f"imgs/img-{i:03d}.jpg" for i in range(50)])
    chunk = 1_000_000
    writer = pq.ParquetWriter(temp / "big.parquet", pa.schema([("image", pa.string()), ("caption", pa.string())]))
    with open(temp / "big.txt", "w") as listing:
        for start in range(0, rows, chunk):
            index = np.arange(start, min(start + chunk, rows))
            paths = names[index % 50]
            captions = np.char.add("caption ", index.astype(str))
            writer.write_table(pa.table({"image": paths, "caption": captions}), row_group_size=100_000)
            listing.write("".join(f"{p}\t{c}\n" for p, c in zip(paths.tolist(), captions.tolist(), strict=True)))
    writer.close()
    return temp / "big.parquet", temp / "big.txt"


# Peak RSS from the child's own VmHWM: ru_maxrss would include the parent's size at fork time.
_MEASURE = """
import re, sys, time
started = time.perf_counter()
from capfleet.cli import app
try:
    app(sys.argv[1:], standalone_mode=False)
finally:
    peak_kb = re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1)
    print("MEASURED", time.perf_counter() - started, peak_kb, flush=True)
"""


def bench_limit(temp: Path, rows: int) -> None:
    parquet, listing = write_big_inputs(temp, rows)
    print(f"\n(b) --limit 100 on {rows:,}-row inputs, one `capfleet caption` process each\n")
    print("| input | size on disk | wall s | peak RSS MB |")
    print("| --- | ---: | ---: | ---: |")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    for name, path in (("parquet", parquet), ("file list", listing)):
        command = [sys.executable, "-c", _MEASURE, "caption", str(path), "-o", str(temp / f"out-{name}")]
        command += ["--captioner", "none", "--scorer", "none", "--limit", "100", "--no-progress"]
        result = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
        line = next(line for line in result.stdout.splitlines() if line.startswith("MEASURED"))
        seconds, rss_kb = float(line.split()[1]), int(line.split()[2])
        assert "seen: 100" in result.stdout, result.stdout
        size_mb = path.stat().st_size / 2**20
        print(f"| {name} | {size_mb:.0f} MB | {seconds:.1f} | {rss_kb / 1024:.0f} |")
    print("\ngoal: < 60 s and < 500 MB each")


def plain_parquet_copy(paths: list[Path], out: Path, shard_size: int) -> int:
    """The baseline for (c): the files' bytes and names into one parquet file per `shard_size` images."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out.mkdir()
    for start in range(0, len(paths), shard_size):
        chunk = paths[start : start + shard_size]
        table = pa.table({"key": [p.stem for p in chunk], "image": [p.read_bytes() for p in chunk]})
        pq.write_table(table, out / f"{start // shard_size:05d}.parquet")
    return len(paths)


def bench_parquet(temp: Path, images: int, repeats: int) -> None:
    folder = temp / "images"
    folder.mkdir(parents=True)
    paths = []
    for index in range(images):
        paths.append(folder / f"{index:06d}.jpg")
        paths[-1].write_bytes(photo_like_jpeg(index))
    plain, ours = "plain pyarrow read+write", "capfleet, captioner none"
    times: dict[str, list[float]] = {plain: [], ours: []}
    for attempt in range(repeats):  # interleaved, so a slow spell on a shared machine hits both
        started = time.perf_counter()
        assert plain_parquet_copy(paths, temp / f"plain-{attempt}", 1000) == images
        times[plain].append(time.perf_counter() - started)
        times[ours].append(timed_model_free_run(str(folder), temp / f"capfleet-{attempt}", "parquet", images))
    title = f"(c) image folder in -> parquet out: {images} images (384x288 JPEG), {repeats} repeats, mean"
    mean = print_means(title, times, images, "images")
    print(f"\ncapfleet / plain pyarrow = {mean[plain] / mean[ours]:.2f}x (goal >= 0.9x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tars", type=int, default=8)
    parser.add_argument("--per-tar", type=int, default=250)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--images", type=int, default=2000, help="(c): images in the folder")
    parser.add_argument("--skip", choices=("a", "b", "c"), action="append", default=[], help="leave a part out")
    args = parser.parse_args()
    print(f"cores: {os.cpu_count()}")
    with tempfile.TemporaryDirectory() as temp:
        if "a" not in args.skip:
            bench_webdataset(Path(temp) / "a", args.tars, args.per_tar, args.repeats)
        if "c" not in args.skip:
            bench_parquet(Path(temp) / "c", args.images, args.repeats)
        if "b" not in args.skip:
            bench_limit(Path(temp) / "b", args.rows)


if __name__ == "__main__":
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    main()
    print(f"load average after: {os.getloadavg()[0]:.2f}")
