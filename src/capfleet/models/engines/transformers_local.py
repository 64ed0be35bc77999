"""The `transformers` engine: Hugging Face `generate` in this process (models/captioner.py).

The default engine, and the only one that can quantise its models (`--quantize int8`).
"""

from __future__ import annotations

from dataclasses import dataclass

from capfleet.options import option

NAME = "transformers"
EXTRA = None  # transformers and torch are capfleet's own dependencies
REQUIRES: tuple[str, ...] = ()
RESOLVES_NAMES = True  # --captioner names a model loaded here: checked by name before anything is listed


@dataclass
class Options:
    quantize: str | None = option(
        None,
        "int8: dynamic int8 linear layers, for CPUs without native bf16 (use with --dtype float32).",
        fingerprint="if_set",
        choices=("int8",),
        panel="Models",
    )


def check(config) -> list[str]:
    problems = []
    if config.quantize is not None and config.engine != NAME:
        problems.append("--quantize needs --engine transformers")
    if config.model_processes not in (None, 1) and config.engine != NAME:
        problems.append("--model-processes needs --engine transformers (vLLM and endpoints batch on their own)")
    return problems


def gpus_per_worker(config) -> int:
    """`--gpus N` gives each worker this many GPUs: one model per GPU."""
    return 1


def load(config):
    """The run's captioner, loaded in this process."""
    from capfleet.models.registry import load_captioner

    return load_captioner(
        config.captioner,
        device=config.device,
        dtype=config.dtype,
        decoding=config.decoding,
        top_p=config.top_p,
        max_new_tokens=config.max_new_tokens,
    )
