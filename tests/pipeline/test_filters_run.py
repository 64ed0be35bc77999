"""Filters inside whole runs: filtered records, counts, rows, resume, and duplicates across shards."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
from PIL import Image

from capfleet.config import ConfigError, RunConfig
from capfleet.runners.lifecycle import run_caption
from capfleet.stages.filters.dedup import resolve_duplicates
from tests.filter_images import altered_copies, export, jpeg_bytes, redness_classifier, scenes, text_image
from tests.pipeline.helpers import load_with_datasets, read_errors, read_rows

pytest.importorskip("imagehash")


def config(inputs, out, **overrides) -> RunConfig:
    values = {"captioner": "none", "scorer": "none", "shard_size": 3, "workers": 2, "progress": False}
    values.update(overrides)
    return RunConfig(inputs=[str(i) for i in inputs], output=str(out), **values)


def read_filtered(out: Path) -> list[dict]:
    rows = []
    for path in sorted((out / "_capfleet" / "filtered").glob("filtered-*.jsonl")):
        rows += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return rows


@pytest.fixture(scope="module")
def copies_folder(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """Six distinct scenes first, then altered copies of three of them (later in listing order).

    Returns the folder and {copy file name: the original's file name}.
    """
    work = tmp_path_factory.mktemp("dups")
    folder = work / "in"
    folder.mkdir()
    originals = scenes(work / "scenes", 6, size=160)
    for index, path in enumerate(originals):
        shutil.copy(path, folder / f"a{index}.png")
    expected = {}
    for index in (0, 2, 5):
        for kind, data in altered_copies(Image.open(originals[index]).convert("RGB")).items():
            (folder / f"b{index}-{kind}.jpg").write_bytes(data)
            expected[f"b{index}-{kind}.jpg"] = f"a{index}.png"
    shutil.copy(originals[4], folder / "c4-exact.png")
    expected["c4-exact.png"] = "a4.png"
    return folder, expected


def name(source: str) -> str:
    return source.rsplit("/", 1)[1]


def check_duplicates(out: Path, expected: dict[str, str]) -> None:
    rows, filtered = read_rows(out), read_filtered(out)
    key_to_name = {row["key"]: name(row["source"]) for row in rows}
    assert {name(row["source"]) for row in rows} == {f"a{i}.png" for i in range(6)}
    assert {name(f["source"]): key_to_name[f["duplicate_of"]] for f in filtered} == expected
    assert {f["kind"] for f in filtered if name(f["source"]) == "c4-exact.png"} == {"exact"}
    assert all(f["filter"] == "duplicate" and f["score"] <= f["threshold"] == 8 for f in filtered)


def test_near_duplicates_across_shards_keep_the_first_occurrence(tmp_path, copies_folder):
    folder, expected = copies_folder
    summary = run_caption(config([folder], tmp_path / "out", dedup="near"))
    check_duplicates(tmp_path / "out", expected)
    assert (summary.stats.captioned, summary.stats.filtered, summary.stats.failed) == (6, len(expected), 0)


def test_the_beam_runner_finds_the_same_duplicates(tmp_path, copies_folder):
    pytest.importorskip("apache_beam")
    from capfleet.runners.beam import run_beam

    folder, expected = copies_folder
    summary = run_beam(config([folder], tmp_path / "out", dedup="near"), ["--direct_num_workers=2"])
    check_duplicates(tmp_path / "out", expected)
    assert summary.stats.filtered == len(expected)


@pytest.mark.slow  # two spawned worker processes
def test_gpus_workers_hash_and_find_the_same_duplicates(tmp_path, copies_folder):
    folder, expected = copies_folder
    local = run_caption(config([folder], tmp_path / "local", shard_size=4, dedup="near"))
    gpus = run_caption(config([folder], tmp_path / "gpus", shard_size=4, dedup="near", gpus=2))
    assert gpus.stats.filtered == local.stats.filtered == len(expected)
    assert sorted(r["key"] for r in read_rows(tmp_path / "gpus")) == sorted(
        r["key"] for r in read_rows(tmp_path / "local")
    )


def test_exact_mode_catches_only_byte_identical_copies(tmp_path, copies_folder):
    folder, _ = copies_folder
    run_caption(config([folder], tmp_path / "out", dedup="exact"))
    assert [(name(f["source"]), f["kind"]) for f in read_filtered(tmp_path / "out")] == [("c4-exact.png", "exact")]


def test_a_limit_run_then_the_full_run_resolves_over_the_longer_listing(tmp_path, copies_folder):
    folder, expected = copies_folder
    first = run_caption(config([folder], tmp_path / "out", dedup="near", limit=8))
    assert first.stats.seen == 8
    second = run_caption(config([folder], tmp_path / "out", dedup="near"))
    assert second.skipped == 6  # shards 0 and 1 were finished; the cut-short shard 2 is redone
    check_duplicates(tmp_path / "out", expected)


def test_resolve_matches_brute_force_on_random_hashes():
    """Multi-index lookup must find exactly what comparing with every kept hash finds."""
    rng = random.Random(0)
    bases = [rng.getrandbits(64) for _ in range(40)]
    records = []
    for index in range(400):
        value = rng.choice(bases)
        for _ in range(rng.randrange(0, 12)):
            value ^= 1 << rng.randrange(64)
        records.append({"key": f"{index:04d}", "sha256": str(index), "phash": f"{value:016x}"})
    kept: list[tuple[int, str]] = []
    expected = []
    for record in records:
        value = int(record["phash"], 16)
        near = [((value ^ other).bit_count(), key) for other, key in kept if (value ^ other).bit_count() <= 5]
        if near:
            distance, key = min(near)
            expected.append({"key": record["key"], "duplicate_of": key, "kind": "near", "distance": distance})
        else:
            kept.append((value, record["key"]))
    assert list(resolve_duplicates(records, 5)) == expected and 50 < len(expected) < 390


def test_filters_record_scores_in_rows_and_rejections_in_records(tmp_path):
    pytest.importorskip("rapidocr_onnxruntime")
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "1-poster.jpg").write_bytes(jpeg_bytes(text_image(["BIG SALE", "TODAY ONLY"])))
    (folder / "2-label.jpg").write_bytes(jpeg_bytes(text_image(["", "", "EXIT"], seed=1)))
    (folder / "3-thumb.jpg").write_bytes(jpeg_bytes(Image.new("RGB", (32, 32), (90, 120, 30))))
    (folder / "4-broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    summary = run_caption(config([folder], tmp_path / "out", max_text_area=0.08, min_side=64))
    rows, filtered = read_rows(tmp_path / "out"), read_filtered(tmp_path / "out")
    assert [(name(f["source"]), f["filter"]) for f in filtered] == [
        ("1-poster.jpg", "text_area"),
        ("3-thumb.jpg", "min_side"),
    ]
    assert [name(e["source"]) for e in read_errors(tmp_path / "out")] == ["4-broken.jpg"]
    assert [name(row["source"]) for row in rows] == ["2-label.jpg"]
    assert 0.01 < rows[0]["text_area"] <= 0.08 and rows[0]["ocr_text"] == "EXIT"
    assert (summary.stats.seen, summary.stats.captioned, summary.stats.filtered, summary.stats.failed) == (4, 1, 2, 1)
    dataset = load_with_datasets(tmp_path / "out")  # the score columns load like the others
    assert dataset["ocr_text"] == ["EXIT"] and dataset["text_area"] == [rows[0]["text_area"]]
    markers = sorted((tmp_path / "out" / "_capfleet" / "completions").glob("*.json"))
    assert [(json.loads(m.read_text())["filtered"], json.loads(m.read_text())["failed"]) for m in markers] == [
        (2, 0),
        (0, 1),
    ]


class PromptRecorder:
    """A stand-in captioner: records the prompt each image was captioned with."""

    name = "recorder"
    accepts_prompt = True
    per_image_prompts = False

    def __init__(self):
        self.prompts: list[str | None] = []

    def input_size(self) -> int:
        return 64

    def encode(self, images):
        return None

    def generate(self, images, num_candidates, prompt=None, seed=None, options=None, encoding=None):
        self.prompts += [prompt] * len(images)
        return [[f"caption {len(self.prompts)}"] for _ in images]


def test_ocr_text_fills_the_prompt_per_image(tmp_path):
    pytest.importorskip("rapidocr_onnxruntime")
    folder = tmp_path / "in"
    folder.mkdir()
    for index, words in enumerate([["OPEN", "DAILY"], [""], ["CLOSED"]]):
        (folder / f"{index}.jpg").write_bytes(jpeg_bytes(text_image(words, seed=index)))
    recorder = PromptRecorder()
    run_caption(config([folder], tmp_path / "out", prompt="text: {ocr_text}."), models=(recorder, None))
    assert recorder.prompts == ["text: OPEN DAILY.", "text: .", "text: CLOSED."]


def test_filter_settings_join_the_fingerprint_only_when_set(tmp_path):
    plain = config(["in"], "out")
    assert not {"max_text_area", "dedup", "min_side", "nsfw_threshold"} & set(plain.fingerprint_fields())
    assert plain.fingerprint() == config(["in"], "out", workers=7).fingerprint()
    assert config(["in"], "out", min_side=10).fingerprint() != plain.fingerprint()
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(jpeg_bytes(Image.new("RGB", (80, 80))))
    run_caption(config([folder], tmp_path / "out", min_side=10))
    with pytest.raises(ConfigError, match="min_side: 10 -> 20"):
        run_caption(config([folder], tmp_path / "out", min_side=20))
    with pytest.raises(ConfigError, match="min_side: 10 -> None"):
        run_caption(config([folder], tmp_path / "out"))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"max_text_area": 1.5}, "--max-text-area must be in"),
        ({"dedup": "fuzzy"}, "--dedup must be one of"),
        ({"dedup_distance": 4}, "--dedup-distance needs --dedup near"),
        ({"watermark_threshold": 0.3}, "--watermark-threshold needs --watermark-model"),
        ({"nsfw_threshold": -1.0}, "--nsfw-threshold must be in"),
    ],
)
def test_bad_filter_settings_fail_fast(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        run_caption(config([tmp_path], tmp_path / "out", **overrides))


def test_a_filter_failing_on_one_image_makes_one_error_record(tmp_path):
    """A classifier that passes the load-time probe but leaves [0, 1] on red images."""
    torch = pytest.importorskip("torch")

    class Doubled(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.redness = redness_classifier()

        def forward(self, image):
            return 2 * self.redness(image)  # grey probe: 1.0; red: ~2; blue: ~0

    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a-red.jpg").write_bytes(jpeg_bytes(Image.new("RGB", (40, 40), (230, 20, 20))))
    (folder / "b-blue.jpg").write_bytes(jpeg_bytes(Image.new("RGB", (40, 40), (20, 20, 230))))
    summary = run_caption(config([folder], tmp_path / "out", watermark_model=export(tmp_path, Doubled(), "doubled")))
    errors = read_errors(tmp_path / "out")
    assert [name(e["source"]) for e in errors] == ["a-red.jpg"]
    assert errors[0]["error"].startswith("filter watermark failed: ") and "[0, 1]" in errors[0]["error"]
    assert [name(row["source"]) for row in read_rows(tmp_path / "out")] == ["b-blue.jpg"]
    assert (summary.stats.failed, summary.stats.filtered) == (1, 0)
