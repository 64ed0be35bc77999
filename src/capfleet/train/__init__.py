"""Training of capfleet's small captioner/scorer model.

Submodules are imported lazily so that ``import capfleet.train`` stays cheap for the CLI. The model
itself lives in ``capfleet.modeling``.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "build_tokenizer": "tokenization",
    "build_image_processor": "tokenization",
    "save_bundle": "tokenization",
    "load_bundle": "tokenization",
    "CaptionDataset": "data",
    "TrainConfig": "trainer",
    "TrainResult": "trainer",
    "train": "trainer",
    "train_main": "trainer",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
