"""The OpenAI chat-completions subset that captioning clients use, answered by the captioner.

One image per request (an `image_url` part: a data URL, or an http(s) URL with --allow-urls).
The text parts become the prompt for chat VLMs, which read instructions; BLIP-style models would
read them as the caption's first words, so for them the text is only counted. The answer is the
best of the server's candidates ranked by the scorer; `n` returns the n best.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from capfleet.api import CaptionModel, CaptionResult
from capfleet.decoding import DEFAULT
from capfleet.serve.errors import ApiError


class ImageUrl(BaseModel):
    url: str
    detail: str | None = None


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["text", "image_url"]
    text: str | None = None
    image_url: ImageUrl | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: str
    content: str | list[ContentPart] | None = None


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str | None = None
    messages: list[ChatMessage] = Field(..., min_length=1)
    n: int = Field(1, ge=1, le=16)
    max_tokens: int | None = Field(None, ge=1, le=256)
    max_completion_tokens: int | None = Field(None, ge=1, le=256)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    seed: int | None = None
    stream: bool = False


def split_request(request: ChatRequest) -> tuple[str, str]:
    """(the one image's URL, the user's text) from the messages, or a 400 saying what is missing."""
    if request.stream:
        raise ApiError(400, "stream=true is not supported: ask for the whole answer")
    urls, texts = [], []
    for message in request.messages:
        if isinstance(message.content, str):
            if message.role == "user":
                texts.append(message.content)
            continue
        for part in message.content or []:
            if part.type == "image_url" and part.image_url is not None:
                urls.append(part.image_url.url)
            elif part.type == "text" and part.text and message.role == "user":
                texts.append(part.text)
    if len(urls) != 1:
        raise ApiError(400, f"send exactly one image_url part per request (got {len(urls)})")
    return urls[0], " ".join(texts).strip()


def caption_options(request: ChatRequest, model: CaptionModel, text: str, candidates: int) -> dict[str, Any]:
    """OpenAI sampling settings -> CaptionModel.caption keyword arguments."""
    options: dict[str, Any] = {
        "candidates": max(candidates, request.n),
        "max_new_tokens": request.max_completion_tokens or request.max_tokens or DEFAULT.max_new_tokens,
        "seed": request.seed,
        "prompt": text if text and model.takes_instructions else None,
    }
    if request.temperature == 0:
        options["decoding"] = "beam"  # OpenAI's temperature 0: the most likely answer
    else:
        options.update(
            decoding="sample",
            temperature=request.temperature or DEFAULT.temperature,
            top_p=request.top_p or DEFAULT.top_p,
        )
    return options


def completion(result: CaptionResult, request: ChatRequest, model: CaptionModel, text: str, max_tokens: int) -> dict:
    """An OpenAI `chat.completion` object whose choices are the best-ranked candidates."""
    order = sorted(range(len(result.candidates)), key=lambda i: -result.scores[i]) if result.scores else None
    ranked = [result.candidates[i] for i in order] if order else list(result.candidates)
    ranked = ranked or [result.text]
    answers = [ranked[index % len(ranked)] for index in range(request.n)]  # fewer distinct than n: repeat
    choices, completion_tokens = [], 0
    for index, answer in enumerate(answers):
        tokens = model.count_tokens(answer)
        completion_tokens += tokens
        finish = "length" if tokens >= max_tokens else "stop"
        message = {"role": "assistant", "content": answer}
        choices.append({"index": index, "message": message, "finish_reason": finish, "logprobs": None})
    prompt_tokens = model.count_tokens(text)
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.model or model.captioner_name,
        "choices": choices,
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }
