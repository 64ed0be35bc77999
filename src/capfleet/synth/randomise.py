"""Domain randomisation (``capfleet synth --style random``): the same scene graphs, drawn in many ways.

A captioner trained on one renderer learns that renderer: its anti-aliasing, its sizes, its clean
backgrounds. Here every image gets its own look: canvas side 64-512 px, plain / gradient / noisy /
photo-like background, shapes from 5% to 80% of the canvas, outlines or not, anti-aliased or
aliased edges, a slight rotation of the whole layout, blur and JPEG compression. The layout is
rotated and zoomed as geometry *before* drawing and the relations are recomputed from the result,
so every caption stays true of its image.
"""

from __future__ import annotations

import io
import math
from dataclasses import replace

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .render import shape_polygon
from .scene import Background, Relation, Scene, Shape, _bg_colour, relate

CANVAS = (64, 512)  # canvas side in pixels
DIAMETER = (0.05, 0.80)  # shape bounding-circle diameter, fraction of the canvas side
MAX_ROTATION = 12.0  # degrees, whole layout
STYLE_BACKGROUNDS = ("plain", "gradient", "noisy", "photo")
SMALL_BELOW = 0.145  # a lone shape's radius under this is "small" (the clean style's sizes meet here)


def _rotate(scene: Scene, degrees: float) -> Scene:
    """The layout turned about the image centre; every polygon turns with it."""
    a = math.radians(degrees)
    cos, sin = math.cos(a), math.sin(a)
    shapes = []
    for s in scene.shapes:
        dx, dy = s.x - 0.5, s.y - 0.5
        x, y = 0.5 + dx * cos - dy * sin, 0.5 + dx * sin + dy * cos
        shapes.append(replace(s, x=x, y=y, rotation=s.rotation + (degrees if s.shape != "circle" else 0.0)))
    return replace(scene, shapes=tuple(shapes))


def _zoom(scene: Scene, rng: np.random.Generator) -> Scene:
    """Scale and shift the layout so shapes span DIAMETER of the canvas and all stay inside it."""
    shapes = scene.shapes
    lo_x, hi_x = min(s.x - s.r for s in shapes), max(s.x + s.r for s in shapes)
    lo_y, hi_y = min(s.y - s.r for s in shapes), max(s.y + s.r for s in shapes)
    extent = max(hi_x - lo_x, hi_y - lo_y)
    smallest, largest = min(s.r for s in shapes), max(s.r for s in shapes)
    z_lo = DIAMETER[0] / (2 * smallest)
    z_hi = min(DIAMETER[1] / (2 * largest), 1.0 / extent)
    z = float(np.exp(rng.uniform(math.log(z_lo), math.log(max(z_hi, z_lo)))))
    ox = float(rng.uniform(0.0, max(1.0 - z * (hi_x - lo_x), 0.0))) - z * lo_x
    oy = float(rng.uniform(0.0, max(1.0 - z * (hi_y - lo_y), 0.0))) - z * lo_y
    moved = [replace(s, x=ox + z * s.x, y=oy + z * s.y, r=z * s.r) for s in shapes]
    if len(moved) == 1:  # a lone shape's size word is absolute; between shapes it stays relative
        moved[0] = replace(moved[0], size="small" if moved[0].r < SMALL_BELOW else "large")
    return replace(scene, shapes=tuple(moved))


def _relations(shapes: tuple[Shape, ...]) -> tuple[Relation, ...]:
    n = len(shapes)
    return tuple(Relation(i, rel, j) for i in range(n) for j in range(i + 1, n) for rel in relate(shapes[i], shapes[j]))


def randomise_layout(scene: Scene, rng: np.random.Generator) -> Scene:
    """Rotated, zoomed and shifted copy of scene, with a random background kind and recomputed relations."""
    turned = _rotate(scene, float(rng.uniform(-MAX_ROTATION, MAX_ROTATION)))
    centred = _zoom(_zoom_to_fit(turned), rng)
    bg = scene.background
    kind = STYLE_BACKGROUNDS[rng.integers(len(STYLE_BACKGROUNDS))]
    colours = bg.colours if kind != "gradient" or len(bg.colours) == 2 else (bg.colours[0], _bg_colour(rng, bg.tone))
    background = Background(kind, bg.tone, colours if kind == "gradient" else colours[:1], bg.angle)
    return Scene(centred.shapes, _relations(centred.shapes), background)


def _zoom_to_fit(scene: Scene) -> Scene:
    """A rotated layout may poke out of the unit square; shrink it about the centre until it fits."""
    reach = max(max(abs(s.x - 0.5), abs(s.y - 0.5)) + s.r for s in scene.shapes)
    if reach <= 0.5:
        return scene
    k = 0.5 / reach
    return replace(
        scene,
        shapes=tuple(replace(s, x=0.5 + k * (s.x - 0.5), y=0.5 + k * (s.y - 0.5), r=k * s.r) for s in scene.shapes),
    )


def _smooth_field(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """size x size float32 noise in about -1..1, smooth at the scale of size / cells."""
    grid = rng.normal(0.0, 1.0, (cells, cells)).astype(np.float32)
    return np.asarray(Image.fromarray(grid).resize((size, size), Image.Resampling.BICUBIC)).clip(-2.5, 2.5) / 2.5


def _background(bg: Background, size: int, rng: np.random.Generator) -> np.ndarray:
    """HxWx3 float32 in 0..1; texture amplitudes stay far below the shape / background contrast."""
    base = np.asarray(bg.colours[0], dtype=np.float32) / 255.0
    img = np.broadcast_to(base, (size, size, 3)).astype(np.float32)
    if bg.kind == "gradient":
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / max(size - 1, 1)
        a = math.radians(bg.angle)
        t = xx * math.cos(a) + yy * math.sin(a)
        t = ((t - t.min()) / max(float(t.max() - t.min()), 1e-6))[..., None]
        img = base * (1 - t) + np.asarray(bg.colours[1], dtype=np.float32) / 255.0 * t
    elif bg.kind == "noisy":
        img = img + rng.normal(0.0, rng.uniform(0.02, 0.07), (size, size, 3)).astype(np.float32)
    elif bg.kind == "photo":  # colour clouds at a few scales plus grain, like an out-of-focus photo
        for cells, amp in ((3, 0.12), (7, 0.06), (17, 0.03)):
            img = img + amp * np.stack([_smooth_field(rng, size, cells) for _ in range(3)], axis=-1)
        img = img + rng.normal(0.0, 0.015, (size, size, 3)).astype(np.float32)
    return np.clip(img, 0.0, 1.0)


def _outline(rgb: tuple[int, int, int], rng: np.random.Generator) -> tuple[int, int, int]:
    """A darker or lighter edge of the shape's own colour, or plain black / white."""
    pick = rng.integers(4)
    if pick == 0:
        return (0, 0, 0)
    if pick == 1:
        return (255, 255, 255)
    k = 0.5 if pick == 2 else 1.5
    return tuple(int(min(255, c * k)) for c in rgb)


def _draw_shapes(image: Image.Image, scene: Scene, rng: np.random.Generator) -> None:
    side = image.size[0]
    draw = ImageDraw.Draw(image)
    outlined = rng.uniform() < 0.4
    for s in scene.shapes:
        outline = _outline(s.rgb, rng) if outlined else None
        width = max(1, int(round(rng.uniform(0.04, 0.12) * s.r * side))) if outlined else 0
        if s.shape == "circle":
            cx, cy, r = s.x * side, s.y * side, 0.88 * s.r * side
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=s.rgb, outline=outline, width=width)
        else:
            draw.polygon(shape_polygon(s, side), fill=s.rgb, outline=outline, width=width)


def render_randomised(scene: Scene, rng: np.random.Generator) -> Image.Image:
    """RGB image of an already randomised scene at a random canvas size with random drawing nuisances."""
    size = int(rng.integers(CANVAS[0], CANVAS[1] + 1))
    background = Image.fromarray((_background(scene.background, size, rng) * 255 + 0.5).astype(np.uint8))
    if rng.uniform() < 0.7:  # anti-aliased: draw at 2-4x and box-reduce
        ss = 4 if size <= 160 else 2
        big = background.resize((size * ss, size * ss), Image.Resampling.BILINEAR)
        _draw_shapes(big, scene, rng)
        image = big.reduce(ss)
    else:
        image = background
        _draw_shapes(image, scene, rng)
    if rng.uniform() < 0.5:
        image = image.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.2, 1.2)) * size / 128))
    if rng.uniform() < 0.5:
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=int(rng.integers(25, 91)))
        image = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    return image
