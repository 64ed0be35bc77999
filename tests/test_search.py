"""`capfleet caption --embeddings` keeps the scorer's embeddings beside each shard; `capfleet search` uses them."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from capfleet.cli import app
from capfleet.models import load_scorer
from tests.pipeline.helpers import load_with_datasets, read_rows

runner = CliRunner()


@pytest.fixture(scope="module")
def captioned(tmp_path_factory):
    root = tmp_path_factory.mktemp("search")
    assert runner.invoke(app, ["synth", "12", "-o", str(root / "scenes"), "--size", "64"]).exit_code == 0
    args = ["caption", str(root / "scenes"), "-o", str(root / "out"), "--captioner", "builtin", "--scorer", "builtin"]
    options = ["--candidates", "2", "--shard-size", "5", "--embeddings", "--dtype", "float32", "--no-progress"]
    result = runner.invoke(app, [*args, *options])
    assert result.exit_code == 0, result.output
    return root / "out"


def test_each_shard_keeps_image_and_chosen_caption_embeddings(captioned):
    scorer = load_scorer("builtin", device="cpu", dtype="float32")  # compared to 1e-5 with the run's
    shards = sorted(captioned.glob("*/embeddings.npz"))
    assert len(shards) == 3
    rows = {r["key"]: r for r in read_rows(captioned)}
    for npz in shards:
        with np.load(npz) as arrays:
            keys, images, texts = [str(k) for k in arrays["keys"]], arrays["image"], arrays["text"]
        assert keys == sorted(k for k, r in rows.items() if (npz.parent / r["file_name"]).exists())
        assert images.shape == texts.shape == (len(keys), scorer.model.config.projection_dim)
        np.testing.assert_allclose(np.linalg.norm(images, axis=1), 1.0, atol=1e-5)
        chosen = [rows[k]["text"] for k in keys]
        np.testing.assert_allclose(texts, scorer.embed_texts(chosen).numpy(), atol=1e-5)
        pictures = [Image.open(npz.parent / rows[k]["file_name"]).convert("RGB") for k in keys]
        np.testing.assert_allclose(images, scorer.embed_images(pictures).numpy(), atol=1e-4)
    assert len(load_with_datasets(captioned)) == 12  # the dataset still loads: the arrays are not rows


def test_search_by_text_and_by_image(captioned):
    result = runner.invoke(app, ["search", str(captioned), "a red circle", "-k", "4"])
    assert result.exit_code == 0, result.output
    lines = [line.split("\t") for line in result.output.strip().splitlines()]
    assert len(lines) == 4 and all(len(cells) == 4 for cells in lines)
    scores = [float(cells[0]) for cells in lines]
    assert scores == sorted(scores, reverse=True)
    image = read_rows(captioned)[7]
    path = next(captioned.glob(f"*/{image['file_name']}"))
    result = runner.invoke(app, ["search", str(captioned), str(path), "-k", "20"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 12  # k is capped at the dataset size
    best = lines[0].split("\t")
    assert best[1] == image["key"] and float(best[0]) == pytest.approx(1.0, abs=1e-4)


def test_search_and_embeddings_errors_are_one_line(captioned, tmp_path):
    scenes = captioned.parent / "scenes"
    result = runner.invoke(app, ["search", str(scenes), "a red circle"])
    assert result.exit_code == 2 and "caption it with --embeddings first" in result.output
    result = runner.invoke(app, ["search", str(tmp_path / "nowhere"), "a red circle"])
    assert result.exit_code == 2 and "is not a directory" in result.output
    result = runner.invoke(app, ["search", str(captioned), "a red circle", "-k", "0"])
    assert result.exit_code == 2 and "k must be at least 1" in result.output
    args = ["caption", str(scenes), "-o", str(tmp_path / "o"), "--captioner", "builtin", "--scorer", "none"]
    result = runner.invoke(app, [*args, "--embeddings"])
    assert result.exit_code == 2 and "--embeddings needs a scorer" in result.output
    assert "Traceback" not in result.output
