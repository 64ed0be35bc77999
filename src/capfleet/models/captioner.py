"""HF image-to-text models behind one call: images in, N candidate captions per image out."""

from __future__ import annotations

from typing import Any

import torch
from transformers.modeling_outputs import BaseModelOutput

from capfleet.config import ConfigError
from capfleet.decoding import DEFAULT, DecodingOptions
from capfleet.models.image_keys_once import generate_blip
from capfleet.models.processors import load_image_processor
from capfleet.models.registry import load_config, wrap_load_errors
from capfleet.models.runtime import pick_device, pick_dtype
from capfleet.protocols import ImageEncoding

DEFAULT_CHAT_PROMPT = "Describe this image in one detailed sentence."
FLORENCE_TASK = "<MORE_DETAILED_CAPTION>"
# model_type -> how prompts and outputs work for that family
_PREFIX_FAMILIES = {"blip": "blip", "git": "git"}
_ENCODER_DECODER_TYPES = {"vision-encoder-decoder", "capfleet-captioner"}


def _family(config) -> str:
    model_type = getattr(config, "model_type", "")
    if model_type in _PREFIX_FAMILIES:
        return _PREFIX_FAMILIES[model_type]
    if model_type in _ENCODER_DECODER_TYPES:
        return "encoder-decoder"
    return "chat"


def check_new_tokens(captioner, requested: int, option: str, name: str) -> None:
    """Refuse more new tokens than the captioner's decoder has positions for (capfleet's own: 64 built in)
    before a run or a request starts: each image would fail on its own."""
    limit = getattr(captioner, "max_new_tokens_limit", None)  # other engines' captioners have no such limit
    if limit is not None and requested > limit:
        raise ConfigError(f"{option} {requested}: captioner {name} writes at most {limit} tokens")


class HFCaptioner:
    """Wraps BLIP, GIT, ViT-GPT2-style encoder-decoders, capfleet's own model and chat VLMs."""

    per_image_prompts = False  # one `generate` call per distinct prompt: HF batches share one text input

    def __init__(self, model, processor, tokenizer, family: str, name: str, options: DecodingOptions):
        self.model = model
        self.processor = processor
        self.tokenizer = tokenizer
        self.family = family
        self.name = name
        self.options = options
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype

    @classmethod
    def load(
        cls,
        path: str,
        device: str = "auto",
        dtype: str = "auto",
        decoding: str = DEFAULT.decoding,
        top_p: float = DEFAULT.top_p,
        max_new_tokens: int = DEFAULT.max_new_tokens,
    ) -> HFCaptioner:
        import transformers as tf

        config = load_config(path, "captioner")
        family = _family(config)
        torch_device = pick_device(device)
        torch_dtype = pick_dtype(dtype, torch_device)
        model_class = {
            "blip": tf.BlipForConditionalGeneration,
            "git": tf.GitForCausalLM,
            "encoder-decoder": tf.AutoModel
            if config.model_type == "capfleet-captioner"
            else tf.VisionEncoderDecoderModel,
            "chat": tf.AutoModelForImageTextToText,
        }[family]
        model = wrap_load_errors(path, "captioner", lambda: model_class.from_pretrained(path, dtype=torch_dtype))
        if family == "encoder-decoder":
            processor = wrap_load_errors(path, "captioner", lambda: load_image_processor(path))
            tokenizer = wrap_load_errors(path, "captioner", lambda: tf.AutoTokenizer.from_pretrained(path))
        else:
            processor = wrap_load_errors(path, "captioner", lambda: tf.AutoProcessor.from_pretrained(path))
            tokenizer = processor.tokenizer
        if family == "chat":
            tokenizer.padding_side = "left"  # batched generation continues from the right edge
        if family == "blip" and torch_dtype == torch.float32:  # in bf16 a whole run gained nothing measurable
            from capfleet.models.blip_attention import fuse_vision_attention

            fuse_vision_attention(model)  # transformers runs BLIP's vision attention eager only
        model.to(torch_device).eval()
        options = DecodingOptions(decoding, top_p, max_new_tokens)
        return cls(model, processor, tokenizer, family, path, options)

    @property
    def max_new_tokens_limit(self) -> int | None:
        """The longest caption the decoder can write: capfleet's own has few positions (64 built in);
        None where the limit is far beyond what a caption asks for."""
        from capfleet.modeling.configuration import MODEL_TYPE

        if self.model.config.model_type == MODEL_TYPE:
            return self.model.config.max_position_embeddings
        return None

    @property
    def accepts_prompt(self) -> bool:
        """Encoder-decoders like ViT-GPT2 have no text input to condition on."""
        return self.family != "encoder-decoder"

    def _inputs(self, images: list, prompt: str | None) -> tuple[dict[str, Any], int]:
        """Model inputs for a batch, and how many leading output tokens are the prompt."""
        if self.family == "encoder-decoder":
            return dict(self.processor(images=images, return_tensors="pt")), 0
        if self.family == "blip":
            text = [prompt] * len(images) if prompt else None
            return dict(self.processor(images=images, text=text, return_tensors="pt")), 0
        if self.family == "git":
            inputs = dict(self.processor(images=images, return_tensors="pt"))
            if prompt:
                ids = self.tokenizer(prompt, add_special_tokens=False).input_ids
                ids = [self.tokenizer.cls_token_id, *ids]
                inputs["input_ids"] = torch.tensor([ids] * len(images))
            return inputs, 0
        if not getattr(self.processor, "chat_template", None):
            # Task-prompt models (Florence-2): the prompt is the whole text input.
            default = FLORENCE_TASK if self.model.config.model_type.startswith("florence") else DEFAULT_CHAT_PROMPT
            text = [prompt or default] * len(images)
            inputs = dict(self.processor(images=images, text=text, return_tensors="pt", padding=True))
        else:
            content = [{"type": "image"}, {"type": "text", "text": prompt or DEFAULT_CHAT_PROMPT}]
            chat = self.processor.apply_chat_template(
                [{"role": "user", "content": content}], add_generation_prompt=True
            )
            inputs = dict(
                self.processor(
                    images=[[image] for image in images], text=[chat] * len(images), return_tensors="pt", padding=True
                )
            )
        # Decoder-only models echo the prompt before the answer; encoder-decoders do not.
        return inputs, 0 if self.model.config.is_encoder_decoder else inputs["input_ids"].shape[1]

    def model_inputs(self, images: list, prompt: str | None) -> tuple[dict[str, torch.Tensor], int]:
        """`_inputs` on the model's device and dtype: what `model.generate` takes."""
        inputs, prompt_tokens = self._inputs(images, prompt)
        return {
            key: value.to(self.device, self.dtype if value.is_floating_point() else None)
            for key, value in inputs.items()
            if isinstance(value, torch.Tensor)
        }, prompt_tokens

    @torch.inference_mode()
    def encode(self, images: list) -> ImageEncoding | None:
        """The batch's encoder output when a scorer can share it, else None: capfleet's own models rank with
        their own encoder (`HFScorer.from_captioner`); other models' scorers are separate models (CLIP)."""
        from capfleet.modeling.configuration import MODEL_TYPE

        if self.model.config.model_type != MODEL_TYPE:
            return None
        pixels = self.model_inputs(images, None)[0]["pixel_values"]
        return ImageEncoding(self.model, self.model.get_encoder()(pixels).last_hidden_state)

    @torch.inference_mode()
    def generate(
        self,
        images: list,
        num_candidates: int,
        prompt: str | None = None,
        seeds: list[int] | None = None,
        options: DecodingOptions | None = None,
        encoding: ImageEncoding | None = None,
    ) -> list[list[str]]:
        """Up to `num_candidates` distinct non-empty captions per image, in generation order.

        `seeds`: one per image (`sampling.image_seed`), so an image samples the same captions in
        any batch; None draws them from torch's global generator. `options` overrides the
        decoding chosen at load time (a run's own settings win). `encoding`: what `encode` made of
        these images, so they are not encoded again.
        """
        grounded = getattr(self.model.config, "ground_relations", False)
        if grounded and encoding is None:
            encoding = self.encode(images)  # the object map and the decoder read the same encoder output
        if encoding is not None and encoding.owner is self.model:
            # a new output each call: generate expands its encoder output in place for the candidates
            inputs, prompt_tokens = {"encoder_outputs": BaseModelOutput(last_hidden_state=encoding.rows)}, 0
        else:
            inputs, prompt_tokens = self.model_inputs(images, prompt)
        if seeds is None:
            seeds = torch.randint(2**62, (len(images),)).tolist()
        kwargs = (options or self.options).generate_kwargs(num_candidates, seeds)
        if grounded:
            from capfleet.modeling.relation_grounding import relation_grounding

            grounding = relation_grounding(self.model, encoding.rows, self.tokenizer)
            kwargs["logits_processor"] = [grounding, *kwargs.get("logits_processor", [])]
        if self.family == "blip" and kwargs["do_sample"] and num_candidates > 1:
            output = generate_blip(self.model, inputs, kwargs)  # the image's keys once, not per candidate
        else:
            output = self.model.generate(**inputs, **kwargs)
        texts = self.tokenizer.batch_decode(output[:, prompt_tokens:], skip_special_tokens=True)
        candidates = []
        for index in range(len(images)):
            chunk = texts[index * num_candidates : (index + 1) * num_candidates]
            candidates.append(list(dict.fromkeys(" ".join(text.split()) for text in chunk if text.strip())))
        return candidates

    def input_size(self) -> int:
        """The processor's target side, so decoding can shrink images no further than needed."""
        return processor_input_size(self.processor)


def processor_input_size(processor) -> int:
    """The side a (multimodal) processor resizes images to; 384 when it does not say."""
    size = getattr(getattr(processor, "image_processor", processor), "size", None) or {}
    if isinstance(size, dict):
        return int(size.get("shortest_edge") or size.get("height") or size.get("longest_edge") or 384)
    return int(getattr(size, "height", None) or getattr(size, "shortest_edge", None) or 384)
