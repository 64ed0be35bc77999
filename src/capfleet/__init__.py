"""capfleet: caption and re-caption image datasets at scale, resumably.

`capfleet.load(...)` returns the production API (capfleet.api.CaptionModel); it is imported on
first use so that `import capfleet` (and the CLI's start-up) does not pay for torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from capfleet.kernel_caches import bound_kernel_caches

bound_kernel_caches()  # before any capfleet module imports torch
__version__ = "0.1.0"
__all__ = ["CaptionModel", "CaptionResult", "load"]

if TYPE_CHECKING:
    from capfleet.api import CaptionModel, CaptionResult, load


def __getattr__(name: str) -> Any:
    if name in __all__:
        from capfleet import api

        return getattr(api, name)
    raise AttributeError(f"module 'capfleet' has no attribute {name!r}")
