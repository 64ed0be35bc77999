"""Request and response bodies of the capfleet endpoints (they also make the /docs page)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from capfleet.decoding import DEFAULT


class CaptionOptions(BaseModel):
    """Per-request caption settings; multipart requests send them as form fields."""

    model_config = ConfigDict(extra="forbid")

    candidates: int | None = Field(None, ge=1, le=32, description="Candidates per image (default: the server's)")
    decoding: Literal["sample", "beam"] = "sample"
    prompt: str | None = Field(None, max_length=1000, description="Caption prefix (BLIP, GIT) or instruction (VLMs)")
    max_new_tokens: int = Field(DEFAULT.max_new_tokens, ge=1, le=256)
    seed: int | None = Field(None, description="Reproducible captions; a seeded request is never batched with others")


class CaptionJson(CaptionOptions):
    images: list[str] = Field(..., description="base64 images, data: URLs, or http(s) URLs with --allow-urls")


class CaptionResultBody(BaseModel):
    text: str
    candidates: list[str]
    scores: list[float]
    flags: list[str] = Field(default_factory=list, description="why every candidate was degenerate; [] when clean")


class CaptionResponse(BaseModel):
    results: list[CaptionResultBody]
    captioner: str
    scorer: str
    timings: dict[str, float | int]


class EmbedImageJson(BaseModel):
    model_config = ConfigDict(extra="forbid")
    images: list[str] = Field(..., description="base64 images, data: URLs, or http(s) URLs with --allow-urls")


class EmbedTextJson(BaseModel):
    model_config = ConfigDict(extra="forbid")
    texts: list[str] = Field(..., min_length=1, max_length=256)


class EmbedResponse(BaseModel):
    embeddings: list[list[float]]
    dim: int
    scorer: str
