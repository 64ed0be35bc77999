"""CLIP-style scorers: cosine similarity of image and text embeddings ranks candidate captions."""

from __future__ import annotations

import torch

from capfleet.models.processors import load_image_processor
from capfleet.models.registry import ModelLoadError, load_config, wrap_load_errors
from capfleet.models.runtime import pick_device, pick_dtype


def _features(output) -> torch.Tensor:
    """transformers 5 returns a model output whose pooler_output is the projection; 4.x a tensor."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


class HFScorer:
    """Any model with `get_image_features` / `get_text_features` (CLIP, SigLIP, capfleet's own)."""

    def __init__(self, model, image_processor, tokenizer, name: str, text_padding: str):
        self.model = model
        self.image_processor = image_processor
        self.tokenizer = tokenizer
        self.name = name
        self.text_padding = text_padding
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype

    @classmethod
    def load(cls, path: str, device: str = "auto", dtype: str = "auto") -> HFScorer:
        import transformers as tf

        config = load_config(path, "scorer")
        torch_device = pick_device(device)
        torch_dtype = pick_dtype(dtype, torch_device)
        model = wrap_load_errors(path, "scorer", lambda: tf.AutoModel.from_pretrained(path, dtype=torch_dtype))
        if not hasattr(model, "get_image_features") or not hasattr(model, "get_text_features"):
            raise ModelLoadError(
                f"scorer {path} ({config.model_type}) has no image/text embeddings; use a CLIP-style model"
            )
        image_processor = wrap_load_errors(path, "scorer", lambda: load_image_processor(path))
        tokenizer = wrap_load_errors(path, "scorer", lambda: tf.AutoTokenizer.from_pretrained(path))
        # SigLIP was trained on texts padded to a fixed length; CLIP uses an EOS-pooled dynamic pad.
        padding = "max_length" if config.model_type == "siglip" else "longest"
        model.to(torch_device).eval()
        return cls(model, image_processor, tokenizer, path, padding)

    @torch.inference_mode()
    def embed_images(self, images: list) -> torch.Tensor:
        """L2-normalised image embeddings, one row per image."""
        pixels = self.image_processor(images=images, return_tensors="pt")["pixel_values"]
        features = _features(self.model.get_image_features(pixel_values=pixels.to(self.device, self.dtype)))
        return torch.nn.functional.normalize(features.float(), dim=-1)

    @torch.inference_mode()
    def embed_texts(self, texts: list[str]) -> torch.Tensor:
        """L2-normalised text embeddings, one row per text (truncated to the model's context)."""
        max_length = getattr(self.tokenizer, "model_max_length", 77)
        max_length = 77 if max_length is None or max_length > 100_000 else max_length
        tokens = self.tokenizer(
            texts, padding=self.text_padding, truncation=True, max_length=max_length, return_tensors="pt"
        )
        tokens = {key: value.to(self.device) for key, value in tokens.items() if key in ("input_ids", "attention_mask")}
        return torch.nn.functional.normalize(_features(self.model.get_text_features(**tokens)).float(), dim=-1)

    def score(self, images: list, candidates: list[list[str]]) -> list[list[float]]:
        """Cosine similarity of each image with each of its own candidates."""
        return self.score_and_embed(images, candidates)[0]

    def score_and_embed(
        self, images: list, candidates: list[list[str]]
    ) -> tuple[list[list[float]], torch.Tensor | None, list[torch.Tensor]]:
        """Scores as :meth:`score`, plus the image embeddings and each image's candidate embeddings
        (computed once for both: a run that keeps embeddings pays nothing extra)."""
        flat = [text for texts in candidates for text in texts]
        if not flat:
            return [[] for _ in images], None, []
        image_embeddings = self.embed_images(images)
        text_embeddings = self.embed_texts(flat)
        scores, blocks, start = [], [], 0
        for row, texts in enumerate(candidates):
            block = text_embeddings[start : start + len(texts)]
            scores.append([round(float(value), 6) for value in block @ image_embeddings[row]])
            blocks.append(block)
            start += len(texts)
        return scores, image_embeddings, blocks
