"""Engines: where captions come from. Each implements the Captioner interface
(`generate(images, num_candidates, prompt, seeds, options) -> list[list[str]]`, `input_size()`,
`name`, `accepts_prompt`), so ranking, hygiene, shards and resume do not know which one runs.

Each engine is a plugin module (capfleet.plugins): `transformers_local.py` (HF `generate` in this
process), `vllm_offline.py` (offline vLLM with continuous batching on GPUs) and `openai_api.py`
(any OpenAI-compatible chat-completions endpoint).
"""

from __future__ import annotations

from capfleet import plugins


def load_engine_captioner(config):
    """The run's captioner, from the engine `config.engine` names."""
    return plugins.find("engine", config.engine).load(config)
