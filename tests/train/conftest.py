"""Fixtures for the captioner/trainer tests: a tiny coloured-shapes imagefolder and a tiny model bundle."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.torch_threads import one_torch_thread  # noqa: F401 (autouse)
from tests.train.helpers import make_shapes_dataset


@pytest.fixture(scope="session")
def shapes_dir(tmp_path_factory) -> Path:
    """32 images of 32x32 px (4 colours x 2 shapes), two shard folders."""
    return make_shapes_dataset(tmp_path_factory.mktemp("shapes"), n=32, size=32)


@pytest.fixture(scope="session")
def scenes(tmp_path_factory) -> Path:
    """16 `capfleet synth` scenes of 32 px: what the distillation tests teach a tiny student on."""
    from typer.testing import CliRunner

    from capfleet.cli import app

    out = tmp_path_factory.mktemp("distill") / "scenes"
    result = CliRunner().invoke(app, ["synth", "16", "-o", str(out), "--size", "32"])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory) -> Path:
    """An untrained tiny captioner saved as an HF bundle."""
    from capfleet.modeling.configuration import preset_config
    from capfleet.modeling.model import CapfleetCaptionerModel
    from capfleet.train.tokenization import build_image_processor, build_tokenizer, save_bundle
    from tests.train.helpers import COLOURS, SHAPES

    tok = build_tokenizer([f"a {c} {s}." for c in COLOURS for s in SHAPES] + ["a shape that is left of it"])
    torch.manual_seed(0)
    model = CapfleetCaptionerModel(preset_config("tiny", len(tok), 32, max_position_embeddings=24))
    return save_bundle(model, tok, build_image_processor(32), tmp_path_factory.mktemp("bundle"))
