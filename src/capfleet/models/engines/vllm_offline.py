"""Captions from offline vLLM (`vllm.LLM`): continuous batching keeps a GPU full with chat VLMs.

Each image is one request: the model's chat template with an image placeholder and the prompt,
the image as multimodal data, and `SamplingParams(n=candidates, temperature, top_p, max_tokens,
seed)` seeded per image. Hand it large batches (`--batch-size 256`) so the scheduler has work.
vLLM pins its own torch and needs a CUDA GPU, so it is imported only when this engine is used;
request building and output parsing are tested without it, the GPU path only where one exists.
"""

from __future__ import annotations

from dataclasses import dataclass

from capfleet.errors import require
from capfleet.models.engines.base import distinct_texts, per_image_seeds
from capfleet.models.registry import CAPTIONER_ALIASES, ModelLoadError, resolve_name, wrap_load_errors
from capfleet.options import option

NAME = "vllm"
EXTRA = "vllm"
REQUIRES = ("vllm",)
RESOLVES_NAMES = True  # --captioner is an alias, hub id or folder, as for transformers
# Said before the install line: the extra is of no use without a CUDA GPU.
WHY = "--engine vllm needs vLLM, on a machine with a CUDA GPU (vLLM brings its own torch; else --engine transformers):"


@dataclass
class Options:
    tensor_parallel_size: int = option(1, "vllm: GPUs one engine spans.", panel="Engine: vllm")


def check(config) -> list[str]:
    """Refuses a missing vLLM before anything is listed."""
    if config.tensor_parallel_size < 1:
        return ["--tensor-parallel-size must be >= 1"]
    if config.engine == NAME:
        require(REQUIRES, EXTRA, f"{WHY} it")
    return []


def gpus_per_worker(config) -> int:
    """One vLLM engine spans `--tensor-parallel-size` GPUs; `--gpus N` runs N such engines."""
    return config.tensor_parallel_size


def load(config) -> VLLMCaptioner:
    from capfleet.decoding import DecodingOptions

    return VLLMCaptioner.from_config(config, DecodingOptions.of_run(config))


def chat_prompt(processor, prompt: str | None) -> str:
    """The model's own chat template around one image and the instruction."""
    from capfleet.models.captioner import DEFAULT_CHAT_PROMPT

    content = [{"type": "image"}, {"type": "text", "text": prompt or DEFAULT_CHAT_PROMPT}]
    return processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True)


def build_requests(processor, images: list, prompts: list[str | None]) -> list[dict]:
    """vLLM prompt dicts: the templated text and the image it refers to."""
    return [
        {"prompt": chat_prompt(processor, prompt), "multi_modal_data": {"image": image}}
        for image, prompt in zip(images, prompts, strict=True)
    ]


def sampling_settings(options, num_candidates: int, seed: int | None) -> dict:
    """SamplingParams keyword arguments. Beam decoding becomes greedy decoding (one candidate):
    vLLM's beam search is a separate API without multimodal batching."""
    if options.decoding == "beam":
        return {"n": 1, "temperature": 0.0, "max_tokens": options.max_new_tokens}
    return {
        "n": num_candidates,
        "temperature": options.temperature,
        "top_p": options.top_p,
        "max_tokens": options.max_new_tokens,
        "seed": seed,
    }


def parse_outputs(outputs: list, num_candidates: int) -> list[list[str]]:
    """RequestOutputs (in request order) -> each image's distinct non-empty candidate texts."""
    return [distinct_texts([completion.text for completion in output.outputs], num_candidates) for output in outputs]


class VLLMCaptioner:
    accepts_prompt = True
    per_image_prompts = True
    family = "chat"

    def __init__(self, llm, processor, name: str, options, sampling_params_class):
        self.llm = llm
        self.processor = processor
        self.name = name
        self.options = options
        self.sampling_params_class = sampling_params_class

    def input_size(self) -> int:
        from capfleet.models.captioner import processor_input_size

        return processor_input_size(self.processor)

    def encode(self, images: list) -> None:
        """None: the engine encodes the images itself, and no scorer shares its model."""
        return None

    def generate(
        self, images: list, num_candidates: int, prompt=None, seeds=None, options=None, encoding=None
    ) -> list[list[str]]:
        prompts = prompt if isinstance(prompt, list) else [prompt] * len(images)
        requests = build_requests(self.processor, images, prompts)
        params = [
            self.sampling_params_class(**sampling_settings(options or self.options, num_candidates, seed))
            for seed in per_image_seeds(seeds, len(images))
        ]
        return parse_outputs(self.llm.generate(requests, params, use_tqdm=False), num_candidates)

    @classmethod
    def from_config(cls, config, options) -> VLLMCaptioner:
        require(REQUIRES, EXTRA, f"{WHY} it")
        import vllm
        from transformers import AutoProcessor

        path = resolve_name(config.captioner, CAPTIONER_ALIASES, "captioner")
        processor = wrap_load_errors(path, "captioner", lambda: AutoProcessor.from_pretrained(path))
        if not getattr(processor, "chat_template", None):
            raise ModelLoadError(f"--engine vllm drives chat VLMs; {config.captioner} has no chat template")
        llm = vllm.LLM(
            model=path,
            tensor_parallel_size=config.tensor_parallel_size,
            dtype=config.dtype,
            seed=config.seed,
            limit_mm_per_prompt={"image": 1},
        )
        return cls(llm, processor, path, options, vllm.SamplingParams)
