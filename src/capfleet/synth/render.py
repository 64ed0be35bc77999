"""Draw a scene graph with PIL, plus the photometric nuisances a captioner must learn to ignore.

Shapes are drawn into a binary mask and a colour layer at ``SS`` times the final size and box-reduced:
the reduced colour layer is exactly the premultiplied colour, so compositing it over the background
gives clean anti-aliased edges with no dark fringe. Background texture, blur and pixel noise come
from ``rng``; everything geometric comes from the scene, so captions stay true whatever rng does.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .scene import Scene, Shape

STAR_INNER = 0.45  # inner / outer radius of the five-pointed star


def shape_polygon(s: Shape, scale: float) -> list[tuple[float, float]]:
    """Vertices of s in pixels; every vertex lies within the bounding circle of radius r."""
    cx, cy, r = s.x * scale, s.y * scale, s.r * scale
    if s.shape == "square":
        radii, start, k = [0.99 * r], 45.0, 4
    elif s.shape == "triangle":
        radii, start, k = [r], -90.0, 3
    elif s.shape == "star":
        radii, start, k = [r, STAR_INNER * r], -90.0, 10
    else:
        raise ValueError(f"unknown polygon shape {s.shape!r}")
    pts = []
    for i in range(k):
        a = math.radians(start + s.rotation + i * 360.0 / k)
        rad = radii[i % len(radii)]
        pts.append((cx + rad * math.cos(a), cy + rad * math.sin(a)))
    return pts


def _shape_layers(scene: Scene, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(premultiplied colour HxWx3, coverage HxWx1) for all shapes, both float32 in 0..1."""
    ss = 4 if size <= 160 else 2
    big = size * ss
    mask = Image.new("L", (big, big), 0)
    col = Image.new("RGB", (big, big), (0, 0, 0))
    dm, dc = ImageDraw.Draw(mask), ImageDraw.Draw(col)
    for s in scene.shapes:
        if s.shape == "circle":
            cx, cy, r = s.x * big, s.y * big, 0.88 * s.r * big
            box = (cx - r, cy - r, cx + r, cy + r)
            dm.ellipse(box, fill=255)
            dc.ellipse(box, fill=s.rgb)
        else:
            pts = shape_polygon(s, big)
            dm.polygon(pts, fill=255)
            dc.polygon(pts, fill=s.rgb)
    m = np.asarray(mask.reduce(ss), dtype=np.float32)[..., None] / 255.0
    c = np.asarray(col.reduce(ss), dtype=np.float32) / 255.0
    return c, m


def _background(scene: Scene, size: int, rng: np.random.Generator) -> np.ndarray:
    """HxWx3 float32 background: solid, two-colour gradient, or solid with faint noise / stripes."""
    bg = scene.background
    cols = np.asarray(bg.colours, dtype=np.float32) / 255.0
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / max(size - 1, 1)
    a = math.radians(bg.angle)
    t = xx * math.cos(a) + yy * math.sin(a)
    if bg.kind == "gradient":
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
        return cols[0] * (1 - t[..., None]) + cols[1] * t[..., None]
    img = np.broadcast_to(cols[0], (size, size, 3)).astype(np.float32)
    if bg.kind == "noise":
        grid = rng.normal(0.0, 1.0, (6, 6)).astype(np.float32)
        field = np.asarray(Image.fromarray(grid).resize((size, size), Image.Resampling.BICUBIC))
        img = img + 0.035 * np.clip(field, -2.5, 2.5)[..., None]
    elif bg.kind == "stripes":
        period = rng.uniform(0.08, 0.2)
        img = img + 0.04 * np.sin(2 * math.pi * t / period)[..., None]
    return img


def render_scene(scene: Scene, size: int, rng: np.random.Generator) -> Image.Image:
    """RGB image of scene at size x size pixels; rng drives texture, blur and noise only."""
    colour, cover = _shape_layers(scene, size)
    img = _background(scene, size, rng) * (1.0 - cover) + colour
    out = Image.fromarray((np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8))
    if rng.uniform() < 0.5:
        out = out.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.3, 0.8)) * size / 96))
    sigma = rng.uniform(0.0, 6.0)
    noisy = np.asarray(out, dtype=np.float32) + rng.normal(0.0, sigma, (size, size, 3)).astype(np.float32)
    return Image.fromarray(np.clip(noisy + 0.5, 0, 255).astype(np.uint8))
