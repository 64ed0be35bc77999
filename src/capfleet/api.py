"""The production API: `capfleet.load(...)` gives applications the models `capfleet caption` uses.

One object captions images (candidates ranked exactly as in a dataset run), embeds images and
texts with the scorer, and scores image-text pairs. The service (`capfleet serve`) is built on it,
so a caption from Python, from the CLI and from HTTP goes through the same code.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image

from capfleet.config import ConfigError, RunConfig
from capfleet.decoding import CANDIDATES, DECODINGS, DEFAULT, DecodingOptions
from capfleet.models.captioner import HFCaptioner, check_new_tokens
from capfleet.models.registry import load_captioner, load_scorer
from capfleet.models.sampling import image_seed
from capfleet.models.scorer import HFScorer
from capfleet.ranking import best_candidate
from capfleet.runners.candidates import ONLY_EMPTY, CandidateMaker, CandidateSettings, Captioned
from capfleet.sample import Item, Sample, position_key
from capfleet.stages.decode import DecodeError, decode_image, normalise_image
from capfleet.stages.hygiene import EMPTY

ImageInput = Union[Image.Image, str, os.PathLike, bytes]  # noqa: UP007 (a runtime alias on Python 3.10)
DEFAULT_MAX_PIXELS = 89_478_485  # the CLI's --max-pixels default (Pillow's bomb threshold)
_CAPFLEET_MODEL_TYPE = "capfleet-captioner"  # checkpoints whose heads also embed images and texts
_RUN_DEFAULTS = RunConfig(inputs=[], output="")  # caption hygiene as `capfleet caption` has it by default


class InvalidImageError(ValueError):
    """An input that is not a usable image; the message names its position and the reason."""

    def __init__(self, index: int, reason: str) -> None:
        super().__init__(f"image {index}: {reason}")
        self.index = index
        self.reason = reason


@dataclass(frozen=True)
class CaptionResult:
    """The chosen caption, and every candidate with its score (empty scores: nothing ranked them).

    `flags`: why every candidate was degenerate even after re-sampling (`capfleet caption`'s
    hygiene), e.g. ["repetition"]; empty for a clean result."""

    text: str
    candidates: list[str] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        row = {"text": self.text, "candidates": list(self.candidates), "scores": list(self.scores)}
        return {**row, "flags": list(self.flags)}


def open_image(image: ImageInput, max_pixels: int = DEFAULT_MAX_PIXELS, min_side: int | None = 384) -> Image.Image:
    """A PIL image, a path or encoded bytes -> RGB image, through the same guards as a dataset run."""
    if isinstance(image, Image.Image):
        return normalise_image(image, min_side)
    if isinstance(image, (bytes, bytearray, memoryview)):
        return decode_image(bytes(image), max_pixels, min_side)[0]
    if isinstance(image, (str, os.PathLike)):
        try:
            data = Path(image).expanduser().read_bytes()
        except OSError as exc:
            raise DecodeError(f"cannot read {image}: {exc.strerror or exc}") from None
        return decode_image(data, max_pixels, min_side)[0]
    raise DecodeError(f"unsupported image type {type(image).__name__}: pass a PIL image, a path or bytes")


def open_images(
    images: Sequence[ImageInput], max_pixels: int = DEFAULT_MAX_PIXELS, min_side: int | None = 384
) -> list[Image.Image]:
    """`open_image` for each input; the first bad one raises InvalidImageError with its index."""
    if isinstance(images, (Image.Image, str, os.PathLike, bytes)):
        images = [images]
    opened = []
    for index, image in enumerate(images):
        try:
            opened.append(open_image(image, max_pixels, min_side))
        except DecodeError as exc:
            raise InvalidImageError(index, str(exc)) from None
    return opened


def check_caption_options(
    candidates: int, decoding: str, max_new_tokens: int, top_p: float, temperature: float
) -> DecodingOptions:
    """The decoding settings of one caption call, or a ConfigError that says which one is wrong."""
    checks = [
        (candidates >= 1, "candidates must be >= 1"),
        (decoding in DECODINGS, f"decoding must be one of {', '.join(DECODINGS)}"),
        (max_new_tokens >= 1, "max_new_tokens must be >= 1"),
        (0 < top_p <= 1, "top_p must be in (0, 1]"),
        (temperature > 0, "temperature must be > 0 (use decoding='beam' for deterministic captions)"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    return DecodingOptions(decoding, top_p, max_new_tokens, temperature)


class CaptionModel:
    """A loaded captioner and (optionally) scorer; one instance is safe to use from one thread at a time."""

    def __init__(
        self,
        captioner: HFCaptioner | None,
        scorer: HFScorer | None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        batch_size: int = 16,
        names: tuple[str, str] | None = None,
    ) -> None:
        if captioner is None and scorer is None:
            raise ConfigError("load a captioner, a scorer or both")
        self.captioner = captioner
        self.scorer = scorer
        self.max_pixels = max_pixels
        self.batch_size = max(1, batch_size)
        self.min_side = captioner.input_size() if captioner is not None else 384
        # the names the models were asked for ("builtin", "blip"), not the folders they resolved to
        self.captioner_name, self.scorer_name = names or (
            captioner.name if captioner is not None else "none",
            scorer.name if scorer is not None else "none",
        )

    @property
    def device(self) -> str:
        return str((self.captioner or self.scorer).device)

    @property
    def accepts_prompt(self) -> bool:
        """Whether `prompt=` means anything to this captioner (ViT-GPT2-style models have no text input)."""
        return self.captioner is not None and self.captioner.accepts_prompt

    @property
    def takes_instructions(self) -> bool:
        """Chat VLMs read a prompt as an instruction; BLIP and GIT read it as the caption's first words."""
        return self.captioner is not None and self.captioner.family == "chat"

    def open_images(self, images: Sequence[ImageInput]) -> list[Image.Image]:
        """Inputs -> RGB images sized for this model, with the dataset run's guards."""
        return open_images(images, self.max_pixels, self.min_side)

    def caption(
        self,
        images: Sequence[ImageInput],
        candidates: int = CANDIDATES,
        decoding: str = DEFAULT.decoding,
        prompt: str | None = None,
        max_new_tokens: int = DEFAULT.max_new_tokens,
        top_p: float = DEFAULT.top_p,
        temperature: float = DEFAULT.temperature,
        seed: int | None = None,
    ) -> list[CaptionResult]:
        """One result per image, in order: `candidates` sampled (or beam) captions ranked by the scorer.

        `seed` makes the call reproducible (same images, options and seed give the same captions).
        """
        if self.captioner is None:
            raise ConfigError("no captioner loaded: load(captioner=...) to caption images")
        options = check_caption_options(candidates, decoding, max_new_tokens, top_p, temperature)
        check_new_tokens(self.captioner, max_new_tokens, "max_new_tokens", self.captioner_name)
        if prompt and not self.accepts_prompt:
            raise ConfigError(f"captioner {self.captioner_name} takes no prompt: drop prompt or use BLIP, GIT or a VLM")
        opened = self.open_images(images)
        # Image i of the call is keyed as image i of a run's listing: it samples (and re-samples) from
        # the seeds `capfleet caption --seed` gives it, whatever the batch it lands in.
        keys = [position_key(index) for index in range(len(opened))]
        seeds = [None if seed is None else image_seed(seed, key) for key in keys]
        settings = CandidateSettings(candidates, _RUN_DEFAULTS.hygiene_options(), seed)
        maker = CandidateMaker(self.captioner, self.scorer, settings, options)
        samples = [Sample(Item(key, "<api>"), image=image) for key, image in zip(keys, opened, strict=True)]
        results: list[CaptionResult] = []
        for start in range(0, len(samples), self.batch_size):
            chunk = slice(start, start + self.batch_size)
            made = maker.make(samples[chunk], seeds[chunk], [prompt or None] * len(samples[chunk]))
            results += [_result(captioned) for captioned in made]
        return results

    def _require_scorer(self) -> HFScorer:
        if self.scorer is None:
            raise ConfigError("no scorer loaded: load(scorer=...) to embed or score")
        return self.scorer

    def embed_images(self, images: Sequence[ImageInput]) -> np.ndarray:
        """L2-normalised float32 image embeddings, shape (images, dim)."""
        scorer = self._require_scorer()
        opened = self.open_images(images)
        rows = [scorer.embed_images(opened[i : i + self.batch_size]) for i in range(0, len(opened), self.batch_size)]
        return np.concatenate([row.cpu().numpy() for row in rows]).astype(np.float32) if rows else _empty(scorer)

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised float32 text embeddings, shape (texts, dim)."""
        scorer = self._require_scorer()
        texts = [texts] if isinstance(texts, str) else list(texts)
        rows = [scorer.embed_texts(texts[i : i + self.batch_size]) for i in range(0, len(texts), self.batch_size)]
        return np.concatenate([row.cpu().numpy() for row in rows]).astype(np.float32) if rows else _empty(scorer)

    def score(self, images: Sequence[ImageInput], texts: Sequence[str]) -> np.ndarray:
        """Cosine similarity of every image with every text, shape (images, texts)."""
        return self.embed_images(images) @ self.embed_texts(texts).T

    def count_tokens(self, text: str) -> int:
        """Tokens in `text` for the captioner's tokenizer (the service's usage counts)."""
        if self.captioner is None or not text:
            return 0
        return len(self.captioner.tokenizer(text, add_special_tokens=False).input_ids)


def _result(captioned: Captioned) -> CaptionResult:
    """A dataset run's outcome for one image as the API returns it: an image whose candidates were all
    empty is an error record in a run, and an empty caption flagged `empty` here."""
    if captioned.error == ONLY_EMPTY:
        return CaptionResult("", flags=[EMPTY])
    if captioned.error is not None:
        raise RuntimeError(captioned.error)
    scores = captioned.scores
    text = captioned.candidates[best_candidate(scores)] if captioned.candidates else ""
    return CaptionResult(text, captioned.candidates, scores, captioned.flags)


def _empty(scorer: HFScorer) -> np.ndarray:
    dim = scorer.embed_texts(["a"]).shape[1]
    return np.zeros((0, dim), dtype=np.float32)


def load(
    captioner: str | None = "builtin",
    scorer: str | None = "auto",
    device: str = "auto",
    dtype: str = "auto",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    batch_size: int = 16,
) -> CaptionModel:
    """Load models by any name the CLI takes (alias, hub id, local folder, `builtin`).

    `scorer="auto"` ranks with the captioner's own embedding heads when it has them (capfleet's
    models, e.g. the built-in one) and ranks nothing otherwise; `None` or `"none"` loads no scorer.
    """
    loaded = None
    if captioner not in (None, "none"):
        loaded = load_captioner(captioner, device=device, dtype=dtype)
    if scorer == "auto":
        own_heads = loaded is not None and loaded.model.config.model_type == _CAPFLEET_MODEL_TYPE
        scorer = captioner if own_heads else None
    ranker = load_scorer(scorer, captioner=loaded, device=device, dtype=dtype) if scorer not in (None, "none") else None
    names = (captioner if loaded is not None else "none", scorer if ranker is not None else "none")
    return CaptionModel(loaded, ranker, max_pixels=max_pixels, batch_size=batch_size, names=names)
