"""Scene graphs for synthetic images, and captions read off them.

The scene graph is the single source of truth: the renderer draws it and the captions are phrased
from it, so a caption can only say what the geometry makes true. Geometry is in normalised units
(0..1 of the image side, y grows downwards like image rows), so one scene renders at any size.
Every shape is kept inside a bounding circle of radius ``r`` that never overlaps another one.
"""

from __future__ import annotations

import colorsys
from dataclasses import asdict, dataclass
from itertools import pairwise

import numpy as np

SHAPES = ("circle", "square", "triangle", "star")
COLOURS = {
    "red": (220, 35, 35),
    "green": (30, 160, 50),
    "blue": (40, 90, 235),
    "yellow": (250, 215, 20),
    "black": (15, 15, 15),
    "white": (250, 250, 250),
    "orange": (250, 130, 20),
    "purple": (150, 60, 200),
}
SIZES = {"small": (0.09, 0.12), "large": (0.17, 0.21)}  # radius of the bounding circle; gap keeps them apart
MARGIN, GAP, NEXT_TO_GAP = 0.03, 0.05, 0.12  # canvas margin, minimum and "next to" edge-to-edge gaps
MIN_CONTRAST = 150.0  # RGB distance between a shape colour and every background colour
BACKGROUNDS = ("solid", "gradient", "noise", "stripes")
RELATION_WORDS = {"left of": "to the left of", "right of": "to the right of", "above": "above", "below": "below"}
INVERSE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}
FUNCTION_WORDS = "a an the and to of left right above below next on light dark background from top bottom"
# what an object head (train/objects.py) names at each image token: every colour+shape, then background
OBJECT_CLASSES = (*(f"{colour} {shape}" for colour in COLOURS for shape in SHAPES), "background")
VOCABULARY = frozenset([*SHAPES, *COLOURS, *SIZES, *FUNCTION_WORDS.split()])  # every word a caption may use


@dataclass(frozen=True)
class Shape:
    shape: str
    colour: str
    size: str
    x: float  # centre, fraction of the image width
    y: float  # centre, fraction of the image height (0 = top)
    r: float  # bounding-circle radius, fraction of the image side
    rotation: float  # degrees
    rgb: tuple[int, int, int]


@dataclass(frozen=True)
class Relation:
    subject: int
    relation: str  # "left of", "right of", "above", "below" or "next to"
    object: int


@dataclass(frozen=True)
class Background:
    kind: str  # one of BACKGROUNDS
    tone: str  # "light" or "dark"; shape colours are chosen to contrast with it
    colours: tuple[tuple[int, int, int], ...]  # one colour, or the two ends of a gradient
    angle: float  # gradient / stripe direction in degrees


@dataclass(frozen=True)
class Scene:
    shapes: tuple[Shape, ...]
    relations: tuple[Relation, ...]
    background: Background

    def to_dict(self) -> dict:
        """Plain-JSON form with stable key order and rounded floats (byte-identical output)."""
        d = asdict(self)
        d["shapes"], d["relations"] = list(d["shapes"]), list(d["relations"])
        for s in d["shapes"]:
            s.update(
                x=round(s["x"], 4),
                y=round(s["y"], 4),
                r=round(s["r"], 4),
                rotation=round(s["rotation"], 2),
                rgb=list(s["rgb"]),
            )
        d["background"]["colours"] = [list(c) for c in d["background"]["colours"]]
        d["background"]["angle"] = round(d["background"]["angle"], 2)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Scene:
        """Inverse of to_dict, e.g. to re-render or score captions from a dataset's ``scene`` column."""
        bg = d["background"]
        return cls(
            tuple(Shape(**{**s, "rgb": tuple(s["rgb"])}) for s in d["shapes"]),
            tuple(Relation(**r) for r in d["relations"]),
            Background(bg["kind"], bg["tone"], tuple(tuple(c) for c in bg["colours"]), bg["angle"]),
        )


def relate(a: Shape, b: Shape) -> list[str]:
    """Relations that hold from a to b, derived from geometry only.

    A direction is claimed only when the bounding circles are fully separated along that axis and
    the offset is not mostly along the other axis; diagonal pairs get both directions.
    """
    dx, dy = b.x - a.x, b.y - a.y
    h = abs(dx) - a.r - b.r > 0
    v = abs(dy) - a.r - b.r > 0
    if h and v:
        h, v = abs(dx) * 2 >= abs(dy), abs(dy) * 2 >= abs(dx)
    elif h:
        h = abs(dy) <= 0.5 * abs(dx)
    elif v:
        v = abs(dx) <= 0.5 * abs(dy)
    rels = []
    if v:
        rels.append("above" if dy > 0 else "below")
    if h:
        rels.append("left of" if dx > 0 else "right of")
    if h and not v and abs(dx) - a.r - b.r <= NEXT_TO_GAP:
        rels.append("next to")
    return rels


def _contrasts(rgb, bg_colours) -> bool:
    return all(np.linalg.norm(np.subtract(rgb, c)) >= MIN_CONTRAST for c in bg_colours)


def _bg_colour(rng, tone: str) -> tuple[int, int, int]:
    h = rng.uniform()
    s, v = (
        (rng.uniform(0, 0.22), rng.uniform(0.88, 1.0))
        if tone == "light"
        else (rng.uniform(0, 0.6), rng.uniform(0.08, 0.28))
    )
    return tuple(int(round(c * 255)) for c in colorsys.hsv_to_rgb(h, s, v))


def _sample_background(rng) -> Background:
    tone = "light" if rng.uniform() < 0.6 else "dark"
    kind = BACKGROUNDS[rng.integers(len(BACKGROUNDS))]
    n = 2 if kind == "gradient" else 1
    return Background(kind, tone, tuple(_bg_colour(rng, tone) for _ in range(n)), float(rng.uniform(0, 360)))


def _line_positions(rng, radii) -> list[float] | None:
    """Centres along one axis, in random order, separated by GAP (None when they cannot fit)."""
    order = rng.permutation(len(radii))
    slack = 1 - 2 * MARGIN - 2 * sum(radii) - GAP * (len(radii) - 1)
    if slack < 0:
        return None
    gaps = rng.dirichlet(np.ones(len(radii) + 1)) * slack
    pos, edge = [0.0] * len(radii), MARGIN
    for k, i in enumerate(order):
        edge += gaps[k] + (GAP if k else 0)
        pos[i] = edge + radii[i]
        edge += 2 * radii[i]
    return pos


def _place(rng, radii, layout: str) -> list[tuple[float, float]] | None:
    """Non-overlapping centres for a "row", "column" or "free" layout, by construction or rejection."""
    lo = [MARGIN + r for r in radii]
    hi = [1 - MARGIN - r for r in radii]
    for _ in range(60):
        if layout == "free":
            xs = [rng.uniform(a, b) for a, b in zip(lo, hi, strict=True)]
            ys = [rng.uniform(a, b) for a, b in zip(lo, hi, strict=True)]
        else:
            along = _line_positions(rng, radii)
            if along is None:
                return None
            base = rng.uniform(max(lo), min(hi))
            across = [float(np.clip(base + rng.uniform(-0.04, 0.04), a, b)) for a, b in zip(lo, hi, strict=True)]
            xs, ys = (along, across) if layout == "row" else (across, along)
        pts = list(zip(xs, ys, strict=True))
        if all(
            np.hypot(pts[i][0] - pts[j][0], pts[i][1] - pts[j][1]) >= radii[i] + radii[j] + GAP
            for i in range(len(pts))
            for j in range(i)
        ):
            return pts
    return None


def sample_scene(rng: np.random.Generator) -> Scene:
    """Draw a random scene: background, 1-3 distinct (shape, colour) pairs, sizes, layout, relations."""
    bg = _sample_background(rng)
    n = int(rng.choice([1, 2, 3], p=[0.25, 0.45, 0.30]))
    allowed = [c for c, rgb in COLOURS.items() if _contrasts(rgb, bg.colours)]
    kinds: list[tuple[str, str]] = []
    while len(kinds) < n:
        k = (SHAPES[rng.integers(len(SHAPES))], allowed[rng.integers(len(allowed))])
        if k not in kinds:
            kinds.append(k)
    sizes = ["large" if rng.uniform() < 0.5 else "small" for _ in range(n)]
    layout = "free" if n == 1 else str(rng.choice(["row", "column", "free"], p=[0.38, 0.32, 0.30]))
    while True:
        radii = [rng.uniform(*SIZES[s]) for s in sizes]
        pts = _place(rng, radii, layout) or _place(rng, radii, "free")
        if pts is not None:
            break
        sizes[sizes.index("large")] = "small"  # three large shapes may not fit; 3 small always do
    shapes = []
    for (shape, colour), size, r, (x, y) in zip(kinds, sizes, radii, pts, strict=True):
        rgb = tuple(int(v) for v in np.clip(np.add(COLOURS[colour], rng.integers(-10, 11, 3)), 0, 255))
        rgb = rgb if _contrasts(rgb, bg.colours) else COLOURS[colour]  # jitter must not erode contrast
        rot = 0.0 if shape == "circle" else float(rng.uniform(-15, 15))
        shapes.append(Shape(shape, colour, size, float(x), float(y), float(r), rot, rgb))
    relations = tuple(
        Relation(i, rel, j) for i in range(n) for j in range(i + 1, n) for rel in relate(shapes[i], shapes[j])
    )
    return Scene(tuple(shapes), relations, bg)


def _np(s: Shape, with_size: bool, article: str = "") -> str:
    words = ([s.size] if with_size else []) + [s.colour, s.shape]
    if not article:
        article = "an" if words[0][0] in "aeiou" else "a"
    return " ".join([article, *words])


def _rel_phrase(rels: list[str], inverse: bool = False) -> str | None:
    """Phrase such as "above and to the left of" for the directional relations in rels."""
    dirs = [INVERSE[r] if inverse else r for r in rels if r in INVERSE]
    return " and ".join(RELATION_WORDS[r] for r in dirs) if dirs else None


def describe(scene: Scene, rng: np.random.Generator) -> list[str]:
    """Several true phrasings of scene; the first is canonical, the rest are shuffled by rng."""
    shapes = scene.shapes
    n = len(shapes)
    sized = n == 1 or len({s.size for s in shapes}) > 1  # size words only when they tell shapes apart
    rels = {}
    for rel in scene.relations:
        rels.setdefault((rel.subject, rel.object), []).append(rel.relation)

    def np_(i, size=sized, article=""):
        return _np(shapes[i], size, article)

    def between(i, j, inverse=False):
        if i > j:
            i, j, inverse = j, i, not inverse
        return _rel_phrase(rels.get((i, j), []), inverse)

    on_bg = f" on a {scene.background.tone} background"
    alts = []
    if n == 1:
        canonical = np_(0)
        alts += [np_(0, size=False), canonical + on_bg]
    elif n == 2:
        phrase = between(0, 1)
        canonical = f"{np_(0)} {phrase} {np_(1)}" if phrase else f"{np_(0)} and {np_(1)}"
        alts += [
            f"{np_(1)} {between(1, 0)} {np_(0)}" if phrase else f"{np_(1)} and {np_(0)}",
            f"{np_(0, False)} and {np_(1, False)}",
            canonical + on_bg,
        ]
        if "next to" in rels.get((0, 1), []):
            alts.append(f"{np_(0)} next to {np_(1)}")
    else:
        pairs = [(i, j) for i, j in ((0, 1), (0, 2), (1, 2)) if between(i, j)]
        listing = f"{np_(0)}, {np_(1)} and {np_(2)}"
        if pairs:
            i, j = pairs[0]
            k = 3 - i - j
            near = sorted((i, j), key=lambda m: np.hypot(shapes[m].x - shapes[k].x, shapes[m].y - shapes[k].y))
            tail = next(
                (f", and {np_(k)} {between(k, m)} {np_(m, False, 'the')}" for m in near if between(k, m)),
                f", and {np_(k)}",
            )
            canonical = f"{np_(i)} {between(i, j)} {np_(j)}{tail}"
            alts.append(f"{np_(j)} {between(j, i)} {np_(i)}{tail}")
        else:
            canonical = listing
        plain = f"{np_(0, False)}, {np_(1, False)} and {np_(2, False)}"
        alts += [plain, plain + on_bg]
        for axis, rel, words in ((0, "left of", "from left to right"), (1, "above", "from top to bottom")):
            order = sorted(range(3), key=lambda m: (shapes[m].x, shapes[m].y)[axis])
            if all(between(a, b) == RELATION_WORDS[rel] for a, b in pairwise(order)):
                alts.append(f"{np_(order[0])}, {np_(order[1])} and {np_(order[2])} {words}")
    alts = [a for a in dict.fromkeys(alts) if a != canonical]
    return [canonical] + [alts[k] for k in rng.permutation(len(alts))]
