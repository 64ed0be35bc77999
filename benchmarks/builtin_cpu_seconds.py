"""CPU-seconds of bench_builtin's two captioning runs (500 held-out scenes, one torch thread, float32) for the
capfleet checkout at ROOT, so two checkouts compare by the work they do rather than by wall time.

    .venv/bin/python benchmarks/builtin_cpu_seconds.py /path/to/checkout   # alternate it with another checkout
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", help="a capfleet checkout: its src/ and benchmarks/ are imported")
    root = str(Path(parser.parse_args().root).resolve())
    sys.path[:0] = [f"{root}/benchmarks", f"{root}/src"]
    from bench_builtin import HELD_OUT_SEED, caption

    import capfleet
    from capfleet.synth import generate_synthetic_dataset

    if not capfleet.__file__.startswith(root):
        raise SystemExit(f"imported {capfleet.__file__}, not the checkout at {root}")
    runs = {"ranked": dict(scorer="builtin", candidates=5), "beam": dict(scorer="none", decoding="beam", candidates=1)}
    with tempfile.TemporaryDirectory() as temp:
        temp = Path(temp)
        generate_synthetic_dataset(500, temp / "scenes", seed=HELD_OUT_SEED, size=64, progress=False)
        for name, options in runs.items():
            start = time.process_time()
            caption(temp / "scenes", temp / name, "builtin", dtype="float32", threads=1, **options)
            print(f"{name}: {time.process_time() - start:.2f} CPU-s", end="  ")
    print(f"({root}, load average {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    main()
