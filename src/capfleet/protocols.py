"""The interfaces the pipeline relies on, written down: a new engine, scorer, filter or input kind implements
one of these and nothing else, and callers read these attributes instead of probing objects for them.

Protocols only (typing, no runtime cost): nothing here imports torch, numpy or another capfleet module.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np

    from capfleet.sample import Sample
    from capfleet.sources.plan import ShardSpec
    from capfleet.sources.units import Unit


class Captioner(Protocol):
    """Images in, candidate captions out: HF models (models/captioner.py), vLLM, OpenAI-style endpoints.

    `accepts_prompt`: a prompt means something to the model (ViT-GPT2-style models read none).
    `per_image_prompts`: `generate` takes a list of prompts; otherwise a batch whose images have different
    prompts is split into one call per prompt.
    `input_size()`: the side the model resizes images to, so decoding shrinks them no further.
    `generate`: up to `num_candidates` distinct captions per image (`prompt`: one, or with `per_image_prompts`
    a list with one per image); `seeds` (one per image) make an image sample the same captions in any batch,
    `options` (DecodingOptions) overrides the decoding chosen at load time.
    `encode`: the batch's image encoding when a scorer can share it (the built-in model ranks with its own
    encoder), else None; handed back to `generate` and `Scorer.score`, the batch is encoded once.
    """

    @property
    def name(self) -> str: ...

    @property  # read-only members: a class attribute, an instance attribute or a property all satisfy them
    def accepts_prompt(self) -> bool: ...

    @property
    def per_image_prompts(self) -> bool: ...

    def input_size(self) -> int: ...

    def encode(self, images: list) -> ImageEncoding | None: ...

    def generate(
        self,
        images: list,
        num_candidates: int,
        prompt: str | list[str | None] | None = None,
        seeds: list[int] | None = None,
        options: Any = None,
        encoding: ImageEncoding | None = None,
    ) -> list[list[str]]: ...


@dataclass(frozen=True)
class ImageEncoding:
    """A batch's image encoding, made by one model (`owner`): `rows[i]` is image i's (a tensor row).
    Only that model reads it; everyone else passes it along untouched."""

    owner: Any
    rows: Any

    def select(self, indexes: list[int]) -> ImageEncoding:
        """The encoding of the images at `indexes`, in that order."""
        return ImageEncoding(self.owner, self.rows[list(indexes)])


@dataclass
class ScoreResult:
    """What a scorer says about each image's own candidates (lists in image order, then candidate order).

    `chunked[i][j]`: candidate j was too long for the text encoder and was scored by sentence chunks.
    `image_embeds[i]` / `text_embeds[i][j]`: L2-normalised float32 vectors (a candidate's is the mean of its
    chunks' re-normalised), present only when `score(..., embeddings=True)` asked for them.
    """

    scores: list[list[float]]
    chunked: list[list[bool]]
    image_embeds: list[np.ndarray] | None = None
    text_embeds: list[list[np.ndarray]] | None = None


class Scorer(Protocol):
    """Ranks candidates (CLIP, SigLIP, the built-in model's own heads) and embeds images and texts.

    `score` is the one scoring call every ranker goes through (`encoding`: the captioner's encoding of the
    same images, which a scorer sharing its model reads instead of encoding them again); `embed_images` /
    `embed_texts` give the L2-normalised embedding rows `capfleet.load(...)`, `capfleet search` and
    `capfleet eval` compare.
    """

    name: str

    def score(
        self, images: list, texts: list[list[str]], *, embeddings: bool = False, encoding: ImageEncoding | None = None
    ) -> ScoreResult: ...

    def embed_images(self, images: list) -> Any: ...

    def embed_texts(self, texts: list[str]) -> Any: ...


class Filter(Protocol):
    """One per-image check (size, OCR, watermark, NSFW, dedup): adds its scores to the sample's fields or
    marks it filtered. `decode_side`: the smallest image side it needs decoded (0: any)."""

    name: str
    decode_side: int

    def __call__(self, sample: Sample) -> Sample: ...


class Source(Protocol):
    """The images of a run's INPUTs (sources/kinds.py picks one): listed once, planned into shards, read per shard.

    `listing()`: the rows recorded in the run's manifest when it starts (an item each, or a file each).
    `plan(rows, shard_size, limit)`: shards over those rows, the same on every rerun; each ShardSpec's `cursor`
    is the source's own, read by no one else. `read(shard, only)`: the shard's units in shard order (`only`:
    just these keys), cheap to make: a Sample whose bytes are already read (a tar member) or a call that fetches
    one and never raises (a failed read is that sample's `error`); the reader runs the calls in its own thread
    pool (sources/units.py). `opens(shard)`: the paths and URLs reading the shard opens (Beam refuses local ones
    its workers cannot see).
    """

    def listing(self) -> Iterable[dict]: ...

    def plan(self, rows: Iterable[dict], shard_size: int, limit: int | None = None) -> list[ShardSpec]: ...

    def read(self, shard: ShardSpec, only: set[str] | None = None) -> Iterator[Unit]: ...

    def opens(self, shard: ShardSpec) -> Iterable[str]: ...
