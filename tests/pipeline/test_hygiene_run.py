"""Hygiene inside a run: degenerate candidates dropped before ranking, re-samples, flags, counts."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from PIL import Image

from capfleet.config import RunConfig
from capfleet.runners.lifecycle import run_caption
from tests.pipeline.helpers import load_with_datasets, read_rows

# Sorted by name: the flagged image (red) is in the second shard, after a shard without flags.
COLOURS = {"a-yellow": (255, 255, 0), "b-green": (0, 255, 0), "c-blue": (0, 0, 255), "d-red": (255, 0, 0)}


class ScriptedCaptioner:
    """A captioner whose answers depend on the image's colour and on how often it was asked."""

    name = "scripted"
    accepts_prompt = True
    per_image_prompts = False

    def __init__(self):
        self.calls = defaultdict(list)  # colour -> seeds it was sampled with
        self.sizes: list[int] = []  # images per call

    def input_size(self) -> int:
        return 16

    def encode(self, images):
        return None

    def generate(self, images, num_candidates, prompt=None, seed=None, options=None, encoding=None):
        rows = []
        self.sizes.append(len(images))
        for image in images:
            colour = image.getpixel((0, 0))
            self.calls[colour].append(seed)
            attempt = len(self.calls[colour])
            if colour == COLOURS["d-red"]:  # loops forever
                rows.append(["bald bald bald bald", "bald man bald man bald man"])
            elif colour == COLOURS["b-green"]:  # refuses once, then answers
                rows.append(["I'm sorry, I cannot help with that."] if attempt == 1 else ["a green field"])
            elif colour == COLOURS["c-blue"]:  # one good candidate among bad ones
                rows.append(["", "I am unable to see images.", "a blue sky", "sky sky sky sky"])
            else:
                rows.append(["This image shows a yellow wall."])
        return rows


def _images(folder: Path) -> Path:
    folder.mkdir()
    for name, colour in COLOURS.items():
        Image.new("RGB", (24, 24), colour).save(folder / f"{name}.png")
    return folder


def _config(inputs: Path, out: Path, **overrides) -> RunConfig:
    values = dict(captioner="tests/scripted", scorer="none", candidates=4, shard_size=2, batch_size=4, progress=False)
    return RunConfig(inputs=[str(inputs)], output=str(out), **{**values, **overrides})


def test_degenerate_candidates_are_dropped_resampled_and_flagged(tmp_path):
    images = _images(tmp_path / "images")
    captioner = ScriptedCaptioner()
    summary = run_caption(_config(images, tmp_path / "out", strip_openers=True), models=(captioner, None))
    rows = {Path(row["source"]).stem: row for row in read_rows(tmp_path / "out")}
    assert summary.stats.captioned == 4 and summary.stats.failed == 0

    red = rows["d-red"]  # never clean: re-sampled twice, then kept as it was, with the reason
    assert red["flags"] == "repetition" and red["candidates"] == ["bald bald bald bald", "bald man bald man bald man"]
    assert len(captioner.calls[COLOURS["d-red"]]) == 3
    assert rows["b-green"]["candidates"] == ["a green field"] and rows["b-green"]["flags"] == ""
    assert rows["c-blue"]["candidates"] == ["a blue sky"] and rows["c-blue"]["text"] == "a blue sky"
    assert len(captioner.calls[COLOURS["c-blue"]]) == 1  # one usable candidate: no re-sample
    assert rows["a-yellow"]["text"] == "A yellow wall."
    assert all(isinstance(row["flags"], str) and row["chunked"] == [] for row in rows.values())

    counts = summary.stats.hygiene
    assert counts["repetition"] == 2 * 3 + 1 and counts["refusal"] == 2 and counts["empty"] == 1
    assert counts["opener"] == 1 and counts["images_resampled"] == 2 and counts["images_flagged"] == 1
    assert any(line.startswith("hygiene: dropped candidates:") and "refusal 2" in line for line in summary.lines())
    # A shard where no row has flags comes before one where a row does: the loader types both alike.
    dataset = load_with_datasets(tmp_path / "out")
    assert sorted(dataset["flags"]) == ["", "", "", "repetition"]


def test_resample_seeds_depend_on_the_image_only(tmp_path):
    images = _images(tmp_path / "images")
    first, second = ScriptedCaptioner(), ScriptedCaptioner()
    run_caption(_config(images, tmp_path / "a", batch_size=4), models=(first, None))
    run_caption(_config(images, tmp_path / "b", batch_size=1, seed=0), models=(second, None))
    red = COLOURS["d-red"]
    assert first.calls[red][1:] == second.calls[red][1:]  # the re-samples' seeds
    assert len({repr(seed) for seed in first.calls[red][1:]}) == 2


def test_a_batchs_resamples_share_one_call_per_attempt(tmp_path):
    images = _images(tmp_path / "images")
    captioner = ScriptedCaptioner()
    summary = run_caption(_config(images, tmp_path / "out", shard_size=4), models=(captioner, None))
    assert summary.stats.hygiene["images_resampled"] == 2
    assert captioner.sizes == [4, 2, 1]  # green and red again together, then red alone


def test_no_hygiene_keeps_every_candidate(tmp_path):
    images = _images(tmp_path / "images")
    summary = run_caption(_config(images, tmp_path / "out", hygiene=False), models=(ScriptedCaptioner(), None))
    rows = {Path(row["source"]).stem: row for row in read_rows(tmp_path / "out")}
    assert rows["d-red"]["flags"] == "" and len(rows["d-red"]["candidates"]) == 2
    assert rows["c-blue"]["candidates"] == ["", "I am unable to see images.", "a blue sky", "sky sky sky sky"]
    assert not summary.stats.hygiene
