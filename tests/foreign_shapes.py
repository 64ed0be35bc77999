"""Shape pictures drawn by a program that is not capfleet's synth: plain PIL ImageDraw, CSS colours,
axis-aligned squares, upright triangles, fat stars, no anti-aliasing, no noise.

A captioner that only learnt synth's renderer (its exact colours, edges and star proportions) fails
here; one that learnt what a red star is does not. Each drawing comes with the facts it shows, in
synth's scene form, so the same object / relation checks apply.
"""

from __future__ import annotations

import math
from pathlib import Path

from PIL import Image, ImageDraw

from capfleet.synth import Background, Scene, Shape

CSS = {
    "red": (255, 0, 0),
    "green": (0, 128, 0),
    "blue": (0, 0, 255),
    "yellow": (255, 255, 0),
    "black": (0, 0, 0),
    "white": (255, 255, 255),
    "orange": (255, 165, 0),
    "purple": (128, 0, 128),
}
LIGHT, DARK = (255, 255, 255), (40, 40, 40)
SHAPE_NAMES = ("circle", "square", "triangle", "star")


def _outline(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]] | None:
    if shape == "square":
        h = r * 0.75
        return [(cx - h, cy - h), (cx + h, cy - h), (cx + h, cy + h), (cx - h, cy + h)]
    if shape == "triangle":
        return [(cx + r * math.cos(math.radians(a)), cy + r * math.sin(math.radians(a))) for a in (-90, 30, 150)]
    if shape == "star":
        return [
            (cx + rad * math.cos(math.radians(-90 + 36 * k)), cy + rad * math.sin(math.radians(-90 + 36 * k)))
            for k, rad in ((k, r if k % 2 == 0 else 0.5 * r) for k in range(10))
        ]
    return None


def draw(objects: list[tuple[str, str, float, float]], side: int, radius: float) -> tuple[Image.Image, Scene]:
    """objects as (colour, shape, x, y) in canvas fractions, all of one radius (fraction of the side)."""
    dark = any(colour in ("white", "yellow") for colour, *_ in objects)
    background = DARK if dark else LIGHT
    image = Image.new("RGB", (side, side), background)
    pen = ImageDraw.Draw(image)
    shapes = []
    for colour, shape, x, y in objects:
        cx, cy, r = x * side, y * side, radius * side
        points = _outline(shape, cx, cy, r)
        if points is None:
            pen.ellipse((cx - r, cy - r, cx + r, cy + r), fill=CSS[colour])
        else:
            pen.polygon(points, fill=CSS[colour])
        shapes.append(Shape(shape, colour, "large", x, y, radius, 0.0, CSS[colour]))
    tone = "dark" if dark else "light"
    return image, Scene(tuple(shapes), (), Background("solid", tone, (background,), 0.0))


def drawings() -> list[tuple[str, list[tuple[str, str, float, float]], int, float]]:
    """(name, objects, canvas side, radius): every shape in a different colour, alone, then pairs side by side."""
    colours = list(CSS)
    cases = []
    for i, shape in enumerate(SHAPE_NAMES):
        for j in range(2):
            colour = colours[(2 * i + j) % len(colours)]
            cases.append((f"one-{colour}-{shape}", [(colour, shape, 0.5, 0.5)], (96, 160)[j], 0.2))
    for i in range(8):
        a, b = SHAPE_NAMES[i % 4], SHAPE_NAMES[(i + 1 + i // 4) % 4]
        ca, cb = colours[i], colours[(i + 3) % len(colours)]
        cases.append((f"pair-{ca}-{a}-{cb}-{b}", [(ca, a, 0.27, 0.5), (cb, b, 0.73, 0.5)], 128, 0.15))
    return cases


def write_drawings(folder: Path) -> dict[str, Scene]:
    """PNG files in folder; returns file name -> the scene it shows."""
    folder.mkdir(parents=True, exist_ok=True)
    truth = {}
    for name, objects, side, radius in drawings():
        image, scene = draw(objects, side, radius)
        image.save(folder / f"{name}.png")
        truth[f"{name}.png"] = scene
    return truth
