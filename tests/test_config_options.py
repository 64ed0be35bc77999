"""RunConfig composed from option fields (issue 23): resume fingerprints stay byte-identical,
validating changes nothing, and the config module stays light."""

from __future__ import annotations

import subprocess
import sys

import pytest

from capfleet import plugins
from capfleet.config import RunConfig

KINDS = ("engine", "filter")

# Computed with capfleet at 360b3db (before RunConfig was composed from option fields), after validate():
# a run started then must still resume now.
PINNED = {
    "defaults": ({}, "33e6716e55dd1c62"),
    "auto_builtin": ({"captioner": "builtin"}, "1f2cbe3db47598e0"),
    "auto_none": ({"captioner": "none"}, "2b7e05f8c3bd5c02"),
    "explicit": (
        {
            "captioner": "git",
            "scorer": "clip",
            "candidates": 3,
            "seed": 7,
            "max_new_tokens": 20,
            "prompt": "a photo of",
        },
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


def test_validate_changes_nothing_and_auto_resolves_where_asked():
    config = _config(captioner="builtin")
    before = config.fingerprint()
    config.validate()
    assert config.scorer == "auto" and config.scorer_name == "builtin"
    assert config.fingerprint() == before == PINNED["auto_builtin"][1]
    assert _config(captioner="none").scorer_name == "none"
    assert _config(captioner="git", scorer="clip").scorer_name == "clip"


def test_speed_settings_stay_out_of_the_fingerprint_and_row_settings_go_in():
    base = _config().fingerprint()
    assert (
        _config(workers=1, shard_retries=0, http_timeout=5.0, runner="ray", gpus_per_worker=0.5).fingerprint() == base
    )
    for changed in ({"seed": 1}, {"dedup": "exact"}, {"quantize": "int8"}, {"txt": "best"}, {"engine": "vllm"}):
        assert _config(**changed).fingerprint() != base, changed


LIGHT_MODULES = ["capfleet.config", *(module.__name__ for kind in KINDS for module in plugins.modules(kind))]


@pytest.mark.parametrize("module", LIGHT_MODULES)
def test_config_and_plugin_modules_import_without_torch_and_plugins_without_config(module):
    probe = f"import sys, {module}; print('torch' in sys.modules, 'capfleet.config' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    torch_loaded, config_loaded = result.stdout.split()
    assert torch_loaded == "False"
    assert module == "capfleet.config" or config_loaded == "False"  # no cycle: plugins never import config
