"""The one registry of engines, filters and output formats.

Each plugin is one module, imported only when chosen, that says what it needs and what it takes:
`NAME`, `EXTRA` (the pip extra, or None), `REQUIRES` (modules that extra installs), `Options` (a
dataclass of `capfleet.options.option` fields, or None), `check(config) -> list[str]` (one-line
problems, found before any work) and its entry point: `load(config)` for engines and filters,
`open(config, location, shard_name)` and `read_rows(path)` for formats. Adding one means adding its
module and one line here; nothing else names it.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from capfleet.errors import ConfigError, require

KINDS = {"engine": "--engine", "filter": "a filter", "format": "--format"}
_MODULES: dict[str, dict[str, str]] = {
    "engine": {
        "transformers": "capfleet.models.engines.transformers_local",
        "vllm": "capfleet.models.engines.vllm_offline",
        "openai": "capfleet.models.engines.openai_api",
    },
    # In the order they screen a sample: the cheap ones first, the duplicate verdicts before all.
    "filter": {
        "dedup": "capfleet.stages.filters.dedup",
        "size": "capfleet.stages.filters.size",
        "watermark": "capfleet.stages.filters.watermark",
        "ocr": "capfleet.stages.filters.ocr",
        "nsfw": "capfleet.stages.filters.nsfw",
    },
    "format": {
        "imagefolder": "capfleet.formats.imagefolder",
        "webdataset": "capfleet.formats.webdataset",
        "parquet": "capfleet.formats.parquet",
        "artifacts": "capfleet.formats.artifacts",
    },
}


def names(kind: str) -> tuple[str, ...]:
    """The plugins of one kind, in registration order (the order filters run and --help lists them)."""
    return tuple(_MODULES[kind])


def modules(kind: str) -> tuple[ModuleType, ...]:
    """Every plugin module of one kind, extras unchecked: for their options and checks (light to import)."""
    return tuple(importlib.import_module(path) for path in _MODULES[kind].values())


def find(kind: str, name: str) -> ModuleType:
    """The plugin module, its extra checked: a one-line error for an unknown name or a missing package."""
    modules = _MODULES[kind]
    if name not in modules:
        raise ConfigError(f"{KINDS[kind]} must be one of {', '.join(modules)}, not {name!r}")
    module = importlib.import_module(modules[name])
    if module.EXTRA:
        require(module.REQUIRES, module.EXTRA, f"{KINDS[kind]} {name}" if kind != "filter" else f"the {name} filter")
    return module
