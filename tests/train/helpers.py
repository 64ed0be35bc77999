"""Tiny captioned imagefolder datasets drawn with PIL (coloured shapes on grey)."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image, ImageDraw

COLOURS = {"red": (220, 30, 30), "green": (30, 180, 30), "blue": (30, 30, 220), "yellow": (230, 220, 20)}
SHAPES = ("square", "circle")


def draw(colour: str, shape: str, size: int, offset: int) -> Image.Image:
    im = Image.new("RGB", (size, size), (128, 128, 128))
    d = ImageDraw.Draw(im)
    lo, hi = size // 4 + offset, 3 * size // 4 + offset
    (d.rectangle if shape == "square" else d.ellipse)([lo, lo, hi, hi], fill=COLOURS[colour])
    return im


def make_shapes_dataset(root: Path, n: int = 32, size: int = 32, shards: int = 2) -> Path:
    """``root/0000k/metadata.jsonl`` rows {file_name, text, captions} like ``capfleet synth`` writes."""
    combos = [(c, s) for c in COLOURS for s in SHAPES]
    rows: list[list[dict]] = [[] for _ in range(shards)]
    for i in range(n):
        colour, shape = combos[i % len(combos)]
        folder = root / f"{i % shards:05d}"
        folder.mkdir(parents=True, exist_ok=True)
        name = f"{i:06d}.png"
        draw(colour, shape, size, offset=(i // len(combos)) % 3 - 1).save(folder / name)
        rows[i % shards].append(
            {
                "file_name": name,
                "text": f"a {colour} {shape}",
                "captions": [f"a {colour} {shape}", f"a {shape} that is {colour}."],
            }
        )
    for k, shard_rows in enumerate(rows):
        (root / f"{k:05d}" / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in shard_rows))
    return root
