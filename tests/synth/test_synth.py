"""Tests for the synthetic scene generator: captions must be true, clean English and reproducible."""

import json
import re
from itertools import pairwise

import numpy as np
import pytest

from capfleet.synth import (
    COLOURS,
    SHAPES,
    VOCABULARY,
    Scene,
    describe,
    generate_synthetic_dataset,
    make_example,
    render_scene,
    sample_scene,
)
from capfleet.synth.scene import MIN_CONTRAST, RELATION_WORDS

NP = r"(?:a|an|the) (?:(?:small|large) )?(\w+) (\w+)"
REL = (
    r"(above and to the left of|above and to the right of|below and to the left of|"
    r"below and to the right of|to the left of|to the right of|above|below|next to)"
)
PAIR = re.compile(f"{NP} {REL} (?={NP})")


def scenes(count=400, seed=123):
    for i in range(count):
        rng = np.random.default_rng([seed, i])
        scene = sample_scene(rng)
        yield scene, describe(scene, rng)


def holds(a, b, rel):
    """Independent geometric check of 'a REL b' on bounding circles (y grows downwards)."""
    checks = {
        "to the left of": a.x + a.r < b.x - b.r,
        "to the right of": a.x - a.r > b.x + b.r,
        "above": a.y + a.r < b.y - b.r,
        "below": a.y - a.r > b.y + b.r,
        "next to": abs(a.x - b.x) > a.r + b.r and abs(a.y - b.y) < abs(a.x - b.x),
    }
    return all(checks[part] for part in rel.replace("above and ", "above|").replace("below and ", "below|").split("|"))


def test_vocabulary_has_required_words():
    for word in ["circle", "square", "triangle", "star", "red", "green", "blue", "yellow", "black", "white"]:
        assert word in VOCABULARY
    assert set(SHAPES) | set(COLOURS) <= VOCABULARY


def test_captions_are_plain_english_in_the_vocabulary():
    for scene, caps in scenes():
        assert len(caps) >= 3 and len(set(caps)) == len(caps)
        for cap in caps:
            words = re.findall(r"[a-z]+", cap)
            assert set(words) <= VOCABULARY, cap
            assert re.fullmatch(r"[a-z ,]+", cap) and "  " not in cap and not cap.endswith(" "), cap
            for art, nxt in pairwise(words):
                if art in ("a", "an"):
                    assert (art == "an") == (nxt[0] in "aeiou"), cap
        for s in scene.shapes:  # the canonical caption names every shape
            assert f"{s.colour} {s.shape}" in caps[0], (caps[0], scene)
        if len(scene.shapes) > 1 and len({s.size for s in scene.shapes}) == 1:
            assert not re.search(r"\b(small|large)\b", " ".join(caps)), caps  # size only when it tells apart


def test_relations_and_captions_are_geometrically_true():
    seen = set()
    for scene, caps in scenes():
        shapes = scene.shapes
        for i, a in enumerate(shapes):  # inside the canvas and never overlapping
            assert a.r <= a.x <= 1 - a.r and a.r <= a.y <= 1 - a.r
            for b in shapes[:i]:
                assert np.hypot(a.x - b.x, a.y - b.y) > a.r + b.r
        for rel in scene.relations:
            a, b = shapes[rel.subject], shapes[rel.object]
            assert holds(a, b, RELATION_WORDS.get(rel.relation, rel.relation)), (rel, a, b)
            if rel.relation == "left of":
                assert a.x < b.x
        by_name = {(s.colour, s.shape): s for s in shapes}
        for cap in caps:
            for m in PAIR.finditer(cap):
                a, b = by_name[m.group(1), m.group(2)], by_name[m.group(4), m.group(5)]
                assert holds(a, b, m.group(3)), (cap, a, b)
                seen.add(m.group(3))
            for order, axis in (("from left to right", "x"), ("from top to bottom", "y")):
                if cap.endswith(order):
                    named = [by_name[c, s] for c, s in re.findall(NP, cap)]
                    for a, b in pairwise(named):
                        assert getattr(a, axis) + a.r < getattr(b, axis) - b.r, cap
    assert {"to the left of", "to the right of", "above", "below", "next to"} <= seen


def test_rendered_shapes_sit_where_the_scene_says_and_contrast():
    for i in range(40):
        rng = np.random.default_rng([7, i])
        scene = sample_scene(rng)
        img = np.asarray(render_scene(scene, 64, rng), dtype=np.float32)
        assert img.shape == (64, 64, 3)
        for s in scene.shapes:
            for c in scene.background.colours:
                assert np.linalg.norm(np.subtract(s.rgb, c)) >= MIN_CONTRAST, (s, c)
            cx, cy = int(s.x * 64), int(s.y * 64)
            patch = img[cy - 1 : cy + 2, cx - 1 : cx + 2].reshape(-1, 3).mean(0)
            assert np.linalg.norm(patch - s.rgb) < 45, (s, patch)
    for size in (16, 200):
        assert make_example(0, 0, size).image.size == (size, size)


def read_tree(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_deterministic_and_prefix_stable(tmp_path):
    a = read_tree(generate_and_return(tmp_path / "a", 12, shard_size=5))
    assert a == read_tree(generate_and_return(tmp_path / "b", 12, shard_size=5))
    assert sorted({k.split("/")[0] for k in a}) == ["00000", "00001", "00002"]
    short = read_tree(generate_and_return(tmp_path / "c", 7, shard_size=4))  # other n and sharding
    for i in range(7):
        name = f"{i:09d}.png"
        assert short[f"{i // 4:05d}/{name}"] == a[f"{i // 5:05d}/{name}"]
    other = read_tree(generate_and_return(tmp_path / "d", 5, shard_size=5, seed=1))
    assert other["00000/000000000.png"] != a["00000/000000000.png"]


def generate_and_return(out, n, shard_size, seed=0):
    generate_synthetic_dataset(n, out, seed=seed, size=48, shard_size=shard_size, progress=False)
    return out


def test_metadata_and_load_dataset(tmp_path):
    datasets = pytest.importorskip("datasets")
    out = tmp_path / "ds"
    summary = generate_synthetic_dataset(7, out, seed=3, size=32, shard_size=3, progress=False)
    assert (summary.images, summary.shards, summary.written_shards) == (7, 3, 3)
    assert sorted(p.name for p in out.iterdir()) == ["00000", "00001", "00002"]  # no .tmp-* left behind
    rows = [json.loads(line) for line in (out / "00002" / "metadata.jsonl").read_text().splitlines()]
    assert [r["key"] for r in rows] == ["000000006"] and rows[0]["file_name"] == "000000006.png"
    assert rows[0]["source"] == "synth:seed=3" and rows[0]["text"] == rows[0]["captions"][0]
    scene = json.loads(rows[0]["scene"])
    assert {"shapes", "relations", "background"} <= set(scene)
    assert Scene.from_dict(scene).to_dict() == scene == make_example(3, 6, 32).scene.to_dict()
    ds = datasets.load_dataset("imagefolder", data_dir=str(out), split="train", cache_dir=str(tmp_path / "c"))
    assert ds.num_rows == 7 and "text" in ds.column_names
    assert sorted(ds["key"]) == [f"{i:09d}" for i in range(7)]
    assert ds[0]["image"].size == (32, 32)


def test_rerun_skips_complete_shards_and_refuses_foreign_ones(tmp_path):
    out = tmp_path / "ds"
    generate_synthetic_dataset(4, out, size=32, shard_size=2, progress=False)
    again = generate_synthetic_dataset(6, out, size=32, shard_size=2, progress=False)
    assert (again.written_shards, again.skipped_shards) == (1, 2)
    with pytest.raises(FileExistsError, match="seed=5"):
        generate_synthetic_dataset(6, out, seed=5, size=32, shard_size=2, progress=False)
    with pytest.raises(FileExistsError, match="beyond"):
        generate_synthetic_dataset(2, out, size=32, shard_size=2, progress=False)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n": 0}, "n must be at least 1"),
        ({"n": -3}, "n must be at least 1"),
        ({"n": 2.5}, "n must be an integer"),
        ({"size": 15}, "size must be at least 16"),
        ({"seed": -1}, "seed must be at least 0"),
        ({"shard_size": 0}, "shard_size must be at least 1"),
    ],
)
def test_bad_arguments_raise_clear_errors(tmp_path, kwargs, message):
    args = {"n": 2, "out_dir": tmp_path / "x", "progress": False, **kwargs}
    with pytest.raises(ValueError, match=message):
        generate_synthetic_dataset(**args)
    assert not (tmp_path / "x").exists()
