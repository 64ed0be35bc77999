"""The models a run loads: checked by name before anything is listed, loaded once per process."""

from __future__ import annotations

import logging

from capfleet import plugins
from capfleet.config import ConfigError, RunConfig
from capfleet.cpus import busy_note
from capfleet.models.engines import load_engine_captioner
from capfleet.models.registry import CAPTIONER_ALIASES, SCORER_ALIASES, load_scorer, resolve_name
from capfleet.models.runtime import auto_quantize, pick_device, use_threads

log = logging.getLogger("capfleet")


def check_model_names(config: RunConfig) -> None:
    """Fail on a misspelt model name, a missing engine or an unusable hub before listing a million files."""
    engine = plugins.find("engine", config.engine)  # its extra checked
    if config.captioner != "none" and engine.RESOLVES_NAMES:  # others pass the name on (a server's model)
        resolve_name(config.captioner, CAPTIONER_ALIASES, "captioner")
    if config.captioner != "none" and config.scorer_name != "none":
        resolve_name(config.scorer_name, SCORER_ALIASES, "scorer")


def load_models(config: RunConfig):
    """Captioner and scorer for a run, loaded once per process (or Beam worker)."""
    from capfleet.models.captioner import check_new_tokens  # transformers: imported only when models load

    threads = use_threads(config.threads)
    note = busy_note(threads) if config.threads is None else None
    if note:
        log.warning(note)
    captioner = None
    if config.captioner != "none":
        captioner = load_engine_captioner(config)
        if config.prompt and not captioner.accepts_prompt:
            raise ConfigError(f"captioner {config.captioner} takes no prompt: drop --prompt or use BLIP, GIT or a VLM")
        check_new_tokens(captioner, config.max_new_tokens, "--max-new-tokens", config.captioner)
    scorer = None
    if captioner is not None:
        scorer = load_scorer(config.scorer_name, captioner=captioner, device=config.device, dtype=config.dtype)
    if (config.quantize or auto_quantize(config.dtype, pick_device(config.device))) == "int8":
        from capfleet.models.quantize import quantize_models

        quantize_models(captioner, scorer, own_models=config.quantize == "int8")  # auto: not the built-in model
    return captioner, scorer
