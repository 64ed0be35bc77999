"""Fixtures for the service tests: synthetic scenes and one default server on the built-in model."""

from __future__ import annotations

import pytest

from capfleet.synth import generate_synthetic_dataset
from tests.serve.helpers import serving
from tests.torch_threads import one_torch_thread  # noqa: F401 (autouse)


@pytest.fixture(scope="session")
def scene_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("serve-scenes")
    generate_synthetic_dataset(4, folder, seed=7, size=96, shard_size=100)
    return sorted(folder.rglob("*.png"))


@pytest.fixture(scope="module")
def service(builtin_model):
    """Base URL of a server with default settings (batching on, no key, no URLs)."""
    with serving(builtin_model, max_wait_ms=20) as url:
        yield url
