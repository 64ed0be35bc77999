"""Shared pytest fixtures.

The ``tiny_*`` fixtures build random-weight checkpoints from the real configs/tokenizers in
tests/fixtures/models (see tests/tiny_models.py) once per session and return the directory, ready
for ``from_pretrained(dir)``.
"""

from __future__ import annotations

import os

# Never reach for the network: no weights can be downloaded here anyway.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from tests import tiny_models  # noqa: E402
from tests.outside_reads import install as _watch_outside_reads  # noqa: E402

OUTSIDE_READS = _watch_outside_reads()


@pytest.fixture(autouse=True)
def _no_reads_beside_the_checkout():
    """A test that read a file beside the checkout fails: a user's clone has nothing there."""
    yield
    paths = OUTSIDE_READS.take()
    if paths:
        pytest.fail(f"read outside the checkout (a fresh clone has no such files): {sorted(set(paths))[:5]}")


def pytest_sessionfinish(session, exitstatus):
    paths = OUTSIDE_READS.take()  # collection and imports, outside any test
    if paths:
        print(f"\nread outside the checkout (a fresh clone has no such files): {sorted(set(paths))[:5]}")
        session.exitstatus = 1


TINY_SEED = 0


@pytest.fixture(scope="session")
def tiny_blip(tmp_path_factory) -> Path:
    """Dir with a tiny BlipForConditionalGeneration + BlipProcessor (real BLIP tokenizer)."""
    return tiny_models.build_blip(tmp_path_factory.mktemp("tiny_blip"), tiny=True, seed=TINY_SEED)


@pytest.fixture(scope="session")
def tiny_vit_gpt2(tmp_path_factory) -> Path:
    """Dir with a tiny VisionEncoderDecoderModel (ViT + GPT-2), ViT preprocessor, GPT-2 tokenizer."""
    return tiny_models.build_vit_gpt2(tmp_path_factory.mktemp("tiny_vit_gpt2"), tiny=True, seed=TINY_SEED)


@pytest.fixture(scope="session")
def tiny_git(tmp_path_factory) -> Path:
    """Dir with a tiny GitForCausalLM + GitProcessor (CLIPImageProcessor + bert-base-uncased)."""
    return tiny_models.build_git(tmp_path_factory.mktemp("tiny_git"), tiny=True, seed=TINY_SEED)


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory) -> Path:
    """Dir with a tiny CLIPModel (projection_dim 16) + the real CLIP tokenizer/preprocessor files."""
    return tiny_models.build_clip(tmp_path_factory.mktemp("tiny_clip"), tiny=True, seed=TINY_SEED)


@pytest.fixture(scope="session")
def tiny_siglip(tmp_path_factory) -> Path:
    """Dir with a tiny SiglipModel + SiglipProcessor (offline stand-in tokenizer, see tiny_models)."""
    return tiny_models.build_siglip(tmp_path_factory.mktemp("tiny_siglip"), tiny=True, seed=TINY_SEED)


@pytest.fixture(scope="session")
def tiny_smolvlm(tmp_path_factory) -> Path:
    """Dir with a tiny Idefics3 (SmolVLM) chat VLM, its processor and chat template."""
    return tiny_models.build_smolvlm(tmp_path_factory.mktemp("tiny_smolvlm"), tiny=True, seed=TINY_SEED)


@pytest.fixture(scope="session")
def builtin_model():
    """The shipped built-in captioner + scorer behind the production API (capfleet.load), loaded once."""
    import capfleet

    return capfleet.load("builtin", scorer="builtin", device="cpu")
