"""Caption hygiene's cost per caption against the time it takes to caption, on this machine.

    python benchmarks/bench_hygiene.py [--scenes 64] [--candidates 5]

Times `clean_candidates` (every check, openers stripped) on short captions like the built-in
model's and on dense 60-90 word VLM-style captions, then times the built-in model (the fastest
captioner capfleet has, so the worst case for the ratio) generating candidates for the same
number of captions in-process. Goal: hygiene < 1% of captioning time per caption.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from capfleet.decoding import DecodingOptions
from capfleet.models.registry import load_captioner
from capfleet.stages.decode import decode_image
from capfleet.stages.hygiene import HygieneOptions, clean_candidates
from capfleet.synth import generate_synthetic_dataset

DENSE = (
    "This image shows a small brown dog sitting on a green mat in front of a large white house with a red door. "
    "Behind the house, tall pine trees sway under a grey winter sky, and a child in a yellow coat waves from an "
    "upstairs window while an old man rakes leaves beside a rusty bicycle near the mailbox."
)
LOOP = "a man with a hat " + "and a hat " * 20
REFUSAL = "I'm sorry, but I cannot describe people in images."


def time_hygiene(captions: list[str], candidates: int, repeats: int) -> float:
    """Seconds per caption for clean_candidates over groups of `candidates`."""
    options = HygieneOptions(strip_openers=True, max_words=120)
    groups = [captions[i : i + candidates] for i in range(0, len(captions), candidates)]
    started = time.perf_counter()
    for _ in range(repeats):
        for group in groups:
            clean_candidates(group, options)
    return (time.perf_counter() - started) / (repeats * len(captions))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=64)
    parser.add_argument("--candidates", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as folder:
        generate_synthetic_dataset(args.scenes, Path(folder), seed=7, size=64)
        images = [decode_image(p.read_bytes(), 89_478_485, 64)[0] for p in sorted(Path(folder).rglob("*.png"))]
    captioner = load_captioner("builtin", device="cpu")
    options = DecodingOptions()  # the run defaults
    captioner.generate(images[:2], args.candidates, None, [0, 1], options)  # warm-up
    started = time.perf_counter()
    seeds = list(range(len(images)))  # one per image, as a run gives them
    short = [text for row in captioner.generate(images, args.candidates, None, seeds, options) for text in row]
    caption_s = (time.perf_counter() - started) / (len(images) * args.candidates)

    dense = [DENSE, LOOP, REFUSAL, DENSE.replace("dog", "cat"), DENSE.replace("red", "blue")] * 40
    rows = [
        ("built-in model captions", time_hygiene(short, args.candidates, 20)),
        ("dense VLM-style captions (~60 words, loops, refusals)", time_hygiene(dense, args.candidates, 20)),
    ]
    print(f"captioning, built-in model, {args.threads} threads: {caption_s * 1e3:.3f} ms per caption")
    print("| captions checked | hygiene per caption | share of captioning time (goal < 1%) |")
    print("| --- | ---: | ---: |")
    for name, seconds in rows:
        print(f"| {name} | {seconds * 1e6:.1f} us | {100 * seconds / caption_s:.3f}% |")


if __name__ == "__main__":
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    main()
    print(f"load average after: {os.getloadavg()[0]:.2f}")
