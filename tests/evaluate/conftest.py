"""Fixtures for the evaluation tests: one tiny random CLIP scorer per session."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny models gain nothing from threads; on a shared 2-core box spin-waiting makes them far slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_scorer(tiny_clip):
    from capfleet.models import load_scorer

    return load_scorer(str(tiny_clip), device="cpu")
