"""Peak memory of a run over the worst images a crawl can hold (goal: under 2 GB with --workers 4).

Sixteen hostile inputs, each cheap on disk and costly if handled naively: 16-bit 9000x9000
greyscale PNGs (under --max-pixels, ~1 MB each), 1 GB sparse files, PNGs with a 50 MB iTXt
chunk and 5000-frame GIFs. One `capfleet caption` subprocess per case list runs with
`--workers 4`; its peak RSS is read from the kernel (`ru_maxrss` of the child).

    .venv/bin/python benchmarks/bench_memory.py              # --captioner none and builtin
    .venv/bin/python benchmarks/bench_memory.py --keep /tmp/worst
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, PngImagePlugin

GOAL_BYTES = 2 * 1024**3


def write_worst_cases(folder: Path) -> dict[str, int]:
    folder.mkdir(parents=True, exist_ok=True)
    ramp = np.add.outer(np.arange(9000, dtype=np.uint32), np.arange(9000, dtype=np.uint32)) * 3
    Image.fromarray((ramp % 65536).astype(np.uint16)).save(folder / "deep-00.png", compress_level=9)
    del ramp
    for index in range(1, 10):
        shutil.copyfile(folder / "deep-00.png", folder / f"deep-{index:02d}.png")
    for index in range(2):
        with open(folder / f"sparse-{index}.jpg", "wb") as handle:
            handle.truncate(1 << 30)
    info = PngImagePlugin.PngInfo()
    info.add_itxt("Comment", "x" * 50_000_000, zip=True)
    Image.new("RGB", (64, 64), "white").save(folder / "itxt-0.png", pnginfo=info)
    shutil.copyfile(folder / "itxt-0.png", folder / "itxt-1.png")
    frames = [Image.new("P", (64, 64), index % 256) for index in range(5000)]
    frames[0].save(folder / "frames-0.gif", save_all=True, append_images=frames[1:], duration=10)
    shutil.copyfile(folder / "frames-0.gif", folder / "frames-1.gif")
    return {"16-bit 9000x9000 png": 10, "1 GB sparse": 2, "50 MB iTXt png": 2, "5000-frame gif": 2}


def run(images: Path, out: Path, captioner: str) -> tuple[float, int, str]:
    scorer = "builtin" if captioner == "builtin" else "none"
    command = [sys.executable, "-m", "capfleet.cli", "caption", str(images), "-o", str(out), "--captioner",
               captioner, "--scorer", scorer, "--workers", "4", "--no-progress", "--overwrite"]  # fmt: skip
    # A fresh wrapper process per case: RUSAGE_CHILDREN keeps the maximum over all children ever waited for.
    probe = (
        "import resource, subprocess, sys; done = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
        "sys.stdout.write(done.stdout); sys.stderr.write(done.stderr); "
        "print('peak_kb', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(done.returncode)"
    )
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", probe, *command], capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"run failed:\n{done.stderr}")
    peak_kb = int(next(line for line in done.stdout.splitlines() if line.startswith("peak_kb")).split()[1])
    summary = next(line for line in done.stdout.splitlines() if line.startswith("seen:"))
    return seconds, peak_kb * 1024, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", type=Path, help="build the inputs here and keep them")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="capfleet-memory-"))
    cases = write_worst_cases(root / "worst")
    print("inputs:", ", ".join(f"{count} x {name}" for name, count in cases.items()))
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"| captioner | wall s | peak RSS | goal < {GOAL_BYTES / 1024**3:.0f} GB | summary |")
    print("| --- | ---: | ---: | --- | --- |")
    for captioner in ("none", "builtin"):
        seconds, peak, summary = run(root / "worst", root / f"out-{captioner}", captioner)
        verdict = "met" if peak < GOAL_BYTES else "NOT met"
        print(f"| {captioner} | {seconds:.1f} | {peak / 1024**2:.0f} MB | {verdict} | {summary} |")
    if args.keep is None:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
