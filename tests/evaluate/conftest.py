"""Fixtures for the evaluation tests: one tiny random CLIP scorer per session."""

from __future__ import annotations

import pytest

from tests.torch_threads import one_torch_thread  # noqa: F401 (autouse)


@pytest.fixture(scope="session")
def tiny_scorer(tiny_clip):
    from capfleet.models import load_scorer

    return load_scorer(str(tiny_clip), device="cpu")
