"""Engines: where captions come from. Each implements the Captioner interface
(`generate(images, num_candidates, prompt, seeds, options) -> list[list[str]]`, `input_size()`,
`name`, `accepts_prompt`), so ranking, hygiene, shards and resume do not know which one runs.

- `transformers`: HF `generate` in this process (models/captioner.py).
- `vllm`: offline vLLM with continuous batching on GPUs (vllm_offline.py).
- `openai`: any OpenAI-compatible chat-completions endpoint (openai_api.py).
"""

from __future__ import annotations


def load_engine_captioner(config):
    """The run's captioner for `config.engine`."""
    from capfleet.models.captioner import DecodingOptions

    options = DecodingOptions(config.decoding, config.top_p, config.max_new_tokens)
    if config.engine == "openai":
        from capfleet.models.engines.openai_api import OpenAICaptioner

        return OpenAICaptioner.from_config(config, options)
    if config.engine == "vllm":
        from capfleet.models.engines.vllm_offline import VLLMCaptioner

        return VLLMCaptioner.from_config(config, options)
    from capfleet.models.registry import load_captioner

    return load_captioner(
        config.captioner,
        device=config.device,
        dtype=config.dtype,
        decoding=config.decoding,
        top_p=config.top_p,
        max_new_tokens=config.max_new_tokens,
    )
