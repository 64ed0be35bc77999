"""What the BLIP decoding tests share: one tiny random-weight BLIP captioner per module and noise images."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from capfleet.models.captioner import HFCaptioner


@pytest.fixture(scope="module")
def captioner(tiny_blip):
    return HFCaptioner.load(str(tiny_blip), device="cpu", dtype="float32", max_new_tokens=8)


@pytest.fixture
def images(request) -> list[Image.Image]:
    """Three 48 px noise images, drawn from the module's IMAGE_SEED."""
    rng = np.random.default_rng(request.module.IMAGE_SEED)
    return [Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)) for _ in range(3)]
