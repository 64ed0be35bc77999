"""RunConfig composed from option fields (issue 23): resume fingerprints stay byte-identical,
validating changes nothing, and the config module stays light."""

from __future__ import annotations

import subprocess
import sys

import pytest

from capfleet.config import RunConfig

# Computed with capfleet at 360b3db (before RunConfig was composed from option fields), after validate():
# a run started then must still resume now.
PINNED = {
    "defaults": ({}, "33e6716e55dd1c62"),
    "auto_builtin": ({"captioner": "builtin"}, "1f2cbe3db47598e0"),
    "auto_none": ({"captioner": "none"}, "2b7e05f8c3bd5c02"),
    "explicit": (
        {"captioner": "git", "scorer": "clip", "candidates": 3, "seed": 7, "max_new_tokens": 20, "prompt": "a photo of"},
        "3b9e18875460a017",
    ),
    "filters": (
        {"min_side": 32, "max_aspect_ratio": 3.0, "nsfw_threshold": 0.4, "dedup": "near", "dedup_distance": 4},
        "6592144ff94f60a6",
    ),
    "formats": (
        {"format": "parquet", "images": False, "image_column": "img", "engine": "openai", "api_base": "http://h/v1"},
        "9e5bae2bc0659fbf",
    ),
    "hygiene": (
        {
            "hygiene": False,
            "strip_openers": True,
            "min_words": 2,
            "max_words": 9,
            "resample_attempts": 0,
            "keep_names": True,
            "quantize": "int8",
        },
        "988786887d2ef911",
    ),
    "speed_only": (
        {"batch_size": 8, "workers": 2, "device": "cpu", "limit": 5, "concurrency": 3, "threads": 1},
        "33e6716e55dd1c62",
    ),
}


def _config(**settings) -> RunConfig:
    return RunConfig(inputs=["/data/a", "/data/b"], output="/tmp/out-x", **settings)


@pytest.mark.parametrize("name", sorted(PINNED))
def test_fingerprints_of_earlier_runs_stay_byte_identical(name):
    settings, fingerprint = PINNED[name]
    assert _config(**settings).validate().fingerprint() == fingerprint
