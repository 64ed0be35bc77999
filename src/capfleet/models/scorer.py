"""CLIP-style scorers: cosine similarity of image and text embeddings ranks candidate captions."""

from __future__ import annotations

import torch

from capfleet.models.captioner import HFCaptioner
from capfleet.models.processors import load_image_processor
from capfleet.models.registry import ModelLoadError, load_config, wrap_load_errors
from capfleet.models.runtime import pick_device, pick_dtype
from capfleet.models.text_chunks import text_chunks
from capfleet.protocols import ImageEncoding, ScoreResult


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

    @classmethod
    def from_captioner(cls, captioner) -> HFScorer | None:
        """The captioner's own model as the scorer when it has embedding heads (capfleet's models), sharing
        its weights: one copy in memory, and ranking reads the encoding the captioner hands on (`encode`)
        instead of encoding the batch twice."""
        from capfleet.modeling.configuration import MODEL_TYPE

        if not isinstance(captioner, HFCaptioner) or captioner.model.config.model_type != MODEL_TYPE:
            return None
        return cls(captioner.model, captioner.processor, captioner.tokenizer, captioner.name, "longest")

    @torch.inference_mode()
    def embed_images(self, images: list) -> torch.Tensor:
        """L2-normalised image embeddings, one row per image."""
        pixels = self.image_processor(images=images, return_tensors="pt")["pixel_values"]
        features = _features(self.model.get_image_features(pixel_values=pixels.to(self.device, self.dtype)))
        return torch.nn.functional.normalize(features.float(), dim=-1)

    @torch.inference_mode()
    def _embed_encoding(self, encoding: ImageEncoding) -> torch.Tensor:
        """`embed_images` from this model's own encoder output for the images."""
        features = self.model.get_image_features(encoder_hidden_states=encoding.rows)
        return torch.nn.functional.normalize(_features(features).float(), dim=-1)

    @property
    def max_text_tokens(self) -> int:
        """The longest text, in tokens with specials, the model reads (77 for CLIP, 64 for SigLIP)."""
        limit = getattr(self.tokenizer, "model_max_length", None)
        limit = 77 if limit is None or limit > 100_000 else limit
        text_config = getattr(self.model.config, "text_config", self.model.config)
        positions = getattr(text_config, "max_position_embeddings", None)
        return min(limit, positions) if positions else limit

    @torch.inference_mode()
    def embed_texts(self, texts: list[str]) -> torch.Tensor:
        """L2-normalised text embeddings, one row per text (truncated to the model's context:
        `score` chunks long texts instead)."""
        max_length = self.max_text_tokens
        tokens = self.tokenizer(
            texts, padding=self.text_padding, truncation=True, max_length=max_length, return_tensors="pt"
        )
        tokens = {key: value.to(self.device) for key, value in tokens.items() if key in ("input_ids", "attention_mask")}
        return torch.nn.functional.normalize(_features(self.model.get_text_features(**tokens)).float(), dim=-1)

    def score(
        self, images: list, texts: list[list[str]], *, embeddings: bool = False, encoding: ImageEncoding | None = None
    ) -> ScoreResult:
        """Cosine similarity of each image with each of its own candidate texts, whether each candidate
        was too long to read whole, and (`embeddings`) the vectors `--embeddings` keeps, at no extra model cost.
        `encoding`: the images' encoding by this very model (its captioner's), read instead of the images.

        A candidate longer than `max_text_tokens` is never truncated: it is cut into sentence
        chunks that fit (`text_chunks`) and scored as the mean of the chunks' similarities.
        """
        if not any(texts):
            return ScoreResult([[] for _ in images], [[] for _ in images])
        limit = self.max_text_tokens
        lengths = iter(len(ids) for ids in self.tokenizer([t for row in texts for t in row])["input_ids"])
        pieces = [
            [[text] if next(lengths) <= limit else text_chunks(text, self.tokenizer, limit) for text in row]
            for row in texts
        ]
        flat = [chunk for row in pieces for chunks in row for chunk in chunks]
        own = encoding is not None and encoding.owner is self.model
        image_embeddings = self._embed_encoding(encoding) if own else self.embed_images(images)
        text_embeddings = self.embed_texts(flat)
        scores, chunked, text_embeds, start = [], [], [], 0
        for row, row_pieces in enumerate(pieces):
            row_scores, row_embeds = [], []
            for chunks in row_pieces:
                rows = text_embeddings[start : start + len(chunks)]
                row_scores.append(round(float((rows @ image_embeddings[row]).mean()), 6))
                if embeddings:
                    row_embeds.append(_mean_direction(rows))
                start += len(chunks)
            scores.append(row_scores)
            chunked.append([len(chunks) > 1 for chunks in row_pieces])
            text_embeds.append(row_embeds)
        if not embeddings:
            return ScoreResult(scores, chunked)
        image_embeds = [image_embeddings[row].float().cpu().numpy() for row in range(len(images))]
        return ScoreResult(scores, chunked, image_embeds, text_embeds)


def _mean_direction(rows: torch.Tensor):
    """A chunked text's embedding: the mean of its chunks' rows, re-normalised, as a numpy array."""
    mean = rows.float().mean(0)
    return (mean / mean.norm().clamp_min(1e-12)).cpu().numpy()
