"""Decide once, in seconds, whether the Hugging Face hub can be used, before any download starts.

Without this an offline machine spends half a minute in the hub client's retries (one warning
per retry) before failing. Here an unreachable hub is noticed by one short probe; cached models
then load in offline mode, and a model that is not cached fails at once with advice that works.
"""

from __future__ import annotations

import functools
import urllib.error
import urllib.request

PROBE_TIMEOUT_SECONDS = 3.0


class HubUnavailableError(RuntimeError):
    """A hub model is needed but the hub cannot be used and the model is not cached."""


def _reachable(endpoint: str, timeout: float) -> bool:
    """Any HTTP answer counts (even an error status): only a failed connection means offline."""
    try:
        urllib.request.urlopen(urllib.request.Request(endpoint, method="HEAD"), timeout=timeout).close()
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False
    return True


@functools.cache
def offline_reason() -> str | None:
    """Why the hub cannot be used (None when it can); an unreachable hub switches on offline mode."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    if not _reachable(constants.ENDPOINT, PROBE_TIMEOUT_SECONDS):
        constants.HF_HUB_OFFLINE = True  # cached models load from disk, with no retries
        return f"the Hugging Face hub ({constants.ENDPOINT}) cannot be reached"
    return None


def is_cached(repo_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)


def require(repo_id: str, role: str) -> None:
    """Raise HubUnavailableError at once when `repo_id` would need a hub that cannot be used."""
    reason = offline_reason()
    if reason is None or is_cached(repo_id):
        return
    raise HubUnavailableError(
        f"{role} '{repo_id}' is not in the local cache and {reason}: download it where the hub is "
        f"reachable (`hf download {repo_id} --local-dir DIR`) and pass that folder as the {role}, "
        "or use the offline built-in model (--captioner builtin)"
    )
