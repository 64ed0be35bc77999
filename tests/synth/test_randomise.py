"""`capfleet synth --style random`: every scene drawn differently, every caption still true."""

import json
from itertools import combinations

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from capfleet.cli import app
from capfleet.synth import Scene, relate, sample_scene
from capfleet.synth.grounding import objects_right, relations_right
from capfleet.synth.randomise import CANVAS, DIAMETER, randomise_layout, render_randomised

runner = CliRunner()


def test_randomised_layouts_fit_the_canvas_span_the_sizes_and_keep_relations_true():
    diameters = []
    for i in range(200):
        rng = np.random.default_rng([9, i])
        scene = randomise_layout(sample_scene(rng), rng)
        for s in scene.shapes:
            assert s.r <= s.x <= 1 - s.r and s.r <= s.y <= 1 - s.r  # inside the canvas
            assert DIAMETER[0] - 1e-9 <= 2 * s.r <= DIAMETER[1] + 1e-9
            diameters.append(2 * s.r)
        for a, b in combinations(scene.shapes, 2):
            assert np.hypot(a.x - b.x, a.y - b.y) > a.r + b.r  # zoom and rotation never make shapes overlap
        for rel in scene.relations:
            assert rel.relation in relate(scene.shapes[rel.subject], scene.shapes[rel.object])
    assert min(diameters) < 0.1 and max(diameters) > 0.6  # the range is really used


def test_rendered_shapes_show_their_colour_at_their_centre():
    """Whatever the canvas, edges, blur and JPEG, the middle of a shape that is not tiny has its colour."""
    sizes, checked = set(), 0
    for i in range(40):
        rng = np.random.default_rng([4, i])
        scene = randomise_layout(sample_scene(rng), rng)
        image = render_randomised(scene, rng)
        side = image.size[0]
        assert image.size == (side, side) and CANVAS[0] <= side <= CANVAS[1]
        sizes.add(side)
        pixels = np.asarray(image, dtype=np.float32)
        for s in scene.shapes:
            if s.r * side >= 8:
                cx, cy = int(s.x * side), int(s.y * side)
                colour = pixels[cy - 1 : cy + 2, cx - 1 : cx + 2].reshape(-1, 3).mean(0)
                assert np.linalg.norm(colour - np.asarray(s.rgb)) < 60, (i, s)
                checked += 1
    assert len(sizes) > 20 and checked > 20


def test_cli_random_style_is_deterministic_and_its_captions_are_true(tmp_path):
    for out in ("a", "b"):
        result = runner.invoke(
            app, ["synth", "10", "-o", str(tmp_path / out), "--style", "random", "--shard-size", "5"]
        )
        assert result.exit_code == 0, result.output
    a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert a and all((tmp_path / "a" / p).read_bytes() == (tmp_path / "b" / p).read_bytes() for p in a)
    sides = set()
    for meta in sorted((tmp_path / "a").glob("*/metadata.jsonl")):
        for line in meta.read_text().splitlines():
            row = json.loads(line)
            assert row["source"] == "synth:seed=0:style=random"
            scene = Scene.from_dict(json.loads(row["scene"]))
            assert all(objects_right(c, scene) and relations_right(c, scene) is not False for c in row["captions"])
            with Image.open(meta.parent / row["file_name"]) as im:
                sides.add(im.size[0])
    assert len(sides) > 5
    clean = runner.invoke(app, ["synth", "10", "-o", str(tmp_path / "a"), "--shard-size", "5"])
    assert clean.exit_code != 0 and "style=clean" in clean.output  # a random-style shard is not reused as clean


def test_cli_rejects_an_unknown_style(tmp_path):
    result = runner.invoke(app, ["synth", "3", "-o", str(tmp_path / "x"), "--style", "fancy"])
    assert result.exit_code != 0 and "style must be one of clean, random" in result.output
    assert "Traceback" not in result.output
