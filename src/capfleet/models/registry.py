"""Names -> loaded models. Aliases map to hub ids; any hub id or local folder also works.

The architecture is chosen from the checkpoint's config (`model_type`), never by matching the
name, so fine-tunes and local copies load like their base model.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

from capfleet.models import hub

BUILTIN = "builtin"
CAPTIONER_ALIASES = {
    "blip": "Salesforce/blip-image-captioning-base",
    "blip-large": "Salesforce/blip-image-captioning-large",
    "git": "microsoft/git-base-coco",
    "git-large": "microsoft/git-large-coco",
    "vit-gpt2": "nlpconnect/vit-gpt2-image-captioning",
    "florence-2": "microsoft/Florence-2-base",
    "smolvlm": "HuggingFaceTB/SmolVLM-256M-Instruct",
    "llava": "llava-hf/llava-1.5-7b-hf",
    "qwen-vl": "Qwen/Qwen2-VL-2B-Instruct",
}
SCORER_ALIASES = {
    "clip": "openai/clip-vit-base-patch32",
    "clip-large": "openai/clip-vit-large-patch14",
    "siglip": "google/siglip-base-patch16-224",
}
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


class ModelLoadError(RuntimeError):
    """A model that cannot be loaded; the message says what to do instead."""


def resolve_name(name: str, aliases: dict[str, str], role: str) -> str:
    """Alias -> hub id; local folders and `org/name` ids pass through; anything else is an error."""
    if name == BUILTIN:
        from capfleet.builtin import MODEL_DIR

        if not (MODEL_DIR / "config.json").exists():
            raise ModelLoadError(f"the built-in model is missing from {MODEL_DIR}: run scripts/build_builtin_model.py")
        return str(MODEL_DIR)
    if name in aliases:
        return _hub_model(aliases[name], role)
    expanded = os.path.expanduser(name)
    if os.path.isdir(expanded):
        if not os.path.exists(os.path.join(expanded, "config.json")):
            if os.path.isdir(os.path.join(expanded, "checkpoints")):  # capfleet train stopped before the end
                raise ModelLoadError(
                    f"{role} folder {name} holds an unfinished `capfleet train` run (checkpoints, no model yet): "
                    "rerun the same train command to finish it"
                )
            raise ModelLoadError(f"{role} folder {name} has no config.json: pass a folder saved by save_pretrained")
        return expanded
    if os.path.exists(expanded) or name.startswith((".", "/", "~")):
        raise ModelLoadError(f"{role} {name}: no such model folder")
    if _HUB_ID.match(name):
        return _hub_model(name, role)
    raise ModelLoadError(
        f"unknown {role} '{name}': use one of {model_names(aliases)}, a hub id (org/name) or a local model folder"
    )


def _hub_model(repo_id: str, role: str) -> str:
    """A hub id, once it is known to be loadable here (hub reachable, or the model cached)."""
    try:
        hub.require(repo_id, role)
    except hub.HubUnavailableError as exc:
        raise ModelLoadError(str(exc)) from None
    return repo_id


def default_scorer(captioner: str) -> str:
    """The scorer a run uses unless one is given: the captioner's own where it has one
    (the built-in model, capfleet-trained folders), none without a captioner, else CLIP."""
    if captioner == "none":
        return "none"
    if captioner == BUILTIN:
        return BUILTIN
    config_file = os.path.join(os.path.expanduser(captioner), "config.json")
    if os.path.isfile(config_file):
        try:
            with open(config_file, encoding="utf-8") as handle:
                model_type = json.load(handle).get("model_type")
        except (OSError, ValueError, AttributeError):
            model_type = None
        from capfleet.modeling.configuration import MODEL_TYPE

        if model_type == MODEL_TYPE:
            return captioner
    return "clip"


def model_names(aliases: dict[str, str]) -> str:
    """`builtin, blip, blip-large, ...`: the names a user can give, for help texts and errors."""
    return ", ".join([BUILTIN, *aliases])


def load_config(name_or_path: str, role: str):
    from transformers import AutoConfig

    _register_builtin_architectures()
    try:
        return AutoConfig.from_pretrained(name_or_path)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(_load_hint(name_or_path, role, exc)) from None


def wrap_load_errors(name_or_path: str, role: str, load):
    """Run `load()`, turning hub/network/format failures into one actionable line."""
    try:
        return load()
    except (OSError, ValueError, KeyError) as exc:
        raise ModelLoadError(_load_hint(name_or_path, role, exc)) from None


def _load_hint(name_or_path: str, role: str, exc: Exception) -> str:
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    first_line = first_line if len(first_line) <= 300 else first_line[:300] + "..."
    if os.path.isdir(name_or_path):
        return f"cannot load {role} from {name_or_path}: {first_line}"
    return (
        f"cannot load {role} '{name_or_path}' from the Hugging Face hub ({first_line}). "
        f"Pass a local model folder instead (e.g. one made with `hf download {name_or_path} --local-dir DIR`)."
    )


def _register_builtin_architectures() -> None:
    """Make capfleet's own model type known to the Auto classes (issue: built-in model)."""
    try:
        import capfleet.modeling.model  # noqa: F401  (registers on import)
    except ImportError:
        pass


def load_captioner(name: str, **options: Any):
    from capfleet.models.captioner import HFCaptioner

    path = resolve_name(name, CAPTIONER_ALIASES, "captioner")
    return HFCaptioner.load(path, **options)


def load_scorer(name: str, captioner: Any = None, **options: Any):
    """The scorer ``name``; the loaded ``captioner``'s own model when ``name`` resolves to it and it can
    embed (a capfleet model), so the two share weights and image encodings."""
    from capfleet.models.scorer import HFScorer

    if name == "none":
        return None
    path = resolve_name(name, SCORER_ALIASES, "scorer")
    if captioner is not None and captioner.name == path:
        shared = HFScorer.from_captioner(captioner)
        if shared is not None:
            return shared
    return HFScorer.load(path, **options)
