"""The FastAPI application: routes over one CaptionModel, which a BatchWorker runs in its own thread."""

from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse
from pydantic import ValidationError
from starlette.datastructures import FormData
from starlette.formparsers import MultiPartException, MultiPartParser

from capfleet import __version__
from capfleet.api import CaptionModel, CaptionResult
from capfleet.config import ConfigError
from capfleet.serve import chat
from capfleet.serve.batching import BatchWorker, QueueFull
from capfleet.serve.errors import ApiError, ApiKeyMiddleware, BodyLimitMiddleware, install_error_handlers
from capfleet.serve.inputs import ImageReader
from capfleet.serve.schemas import (
    CaptionJson,
    CaptionOptions,
    CaptionResponse,
    EmbedImageJson,
    EmbedResponse,
    EmbedTextJson,
)
from capfleet.serve.settings import ServeSettings
from capfleet.serve.url_fetch import UrlFetcher, is_public_address

_MULTIPART_OR_JSON = {
    "requestBody": {
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "file": {"type": "array", "items": {"type": "string", "format": "binary"}},
                        **{name: {"type": "string"} for name in CaptionOptions.model_fields},
                    },
                    "required": ["file"],
                }
            },
            "application/json": {"schema": CaptionJson.model_json_schema()},
        }
    }
}


def _parse(model_class, values: Any):
    """Pydantic validation with the 422 the JSON endpoints give, for bodies FastAPI does not parse itself."""
    try:
        return model_class.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ()))
        raise ApiError(422, f"{where}: {first.get('msg', 'invalid')}" if where else "invalid request") from None


class _MultiPart(MultiPartParser):
    """Starlette's parser, noting whether the closing boundary arrived: it accepts a body that stops
    early and drops the part it stopped in, so a client would get fewer results than files."""

    complete = False

    def on_end(self) -> None:
        self.complete = True


def _is_multipart(request: Request) -> bool:
    """Media types are case-insensitive: `Multipart/Form-Data` is multipart too."""
    return request.headers.get("content-type", "").lower().startswith("multipart/form-data")


@asynccontextmanager
async def _multipart_form(request: Request, max_files: int):
    """`request.form(...)` that refuses a body cut short (a Content-Length that undercounts, say)."""
    parser = _MultiPart(request.headers, request.stream(), max_files=max_files, max_fields=32)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise ApiError(400, exc.message) from None
    try:
        if not parser.complete:
            raise ApiError(400, "the multipart body was cut short: it ends before its closing boundary")
        yield form
    finally:
        await form.close()


async def _json_body(request: Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        raise ApiError(400, "the body is not valid JSON") from None
    except RecursionError:  # json.loads of arrays or objects nested thousands deep
        raise ApiError(400, "the body's JSON is nested too deeply") from None


def create_app(
    model: CaptionModel, settings: ServeSettings | None = None, fetcher: UrlFetcher | None = None
) -> FastAPI:
    """The service for `model`. `fetcher` overrides the URL fetcher that --allow-urls builds."""
    settings = (settings or ServeSettings()).validate()
    worker = BatchWorker(model, settings.max_batch, settings.max_wait_ms, settings.max_queue)
    if fetcher is None and settings.allow_urls:
        allowed = (lambda address: True) if settings.allow_private_urls else is_public_address
        fetcher = UrlFetcher(settings.max_upload_bytes, settings.url_timeout_s, address_allowed=allowed)
    reader = ImageReader(model, settings.max_images, fetcher)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        worker.start()
        try:
            yield
        finally:
            worker.stop()

    app = FastAPI(title="capfleet", version=__version__, lifespan=lifespan)
    app.state.worker = worker
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_upload_bytes)
    if settings.api_key is not None:
        app.add_middleware(ApiKeyMiddleware, api_key=settings.api_key)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"], allow_headers=["*"]
        )

    async def run(kind: str, items: list, options: dict | None = None):
        try:
            return await asyncio.wait_for(worker.submit(kind, items, options), settings.request_timeout_s)
        except QueueFull as exc:
            raise ApiError(503, f"{exc}: retry shortly", {"Retry-After": "1"}) from None
        except asyncio.TimeoutError:
            raise ApiError(504, f"no answer from the model within {settings.request_timeout_s:g} s") from None
        except ConfigError as exc:
            raise ApiError(400, str(exc)) from None

    def caption_kwargs(options: CaptionOptions) -> dict:
        if options.prompt and not model.accepts_prompt:
            raise ApiError(400, f"captioner {model.captioner_name} takes no prompt: drop the prompt option")
        kwargs = options.model_dump()
        kwargs["candidates"] = kwargs["candidates"] or settings.candidates
        return kwargs

    async def form_images(form: FormData) -> list:
        return await reader.from_uploads(form.getlist("file"))

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(resources.files("capfleet.serve").joinpath("static/index.html").read_text())

    @app.get("/health")
    async def health() -> dict:
        """Model names, device, queue depth and the limits a client should know."""
        return {
            "status": "ok",
            "captioner": model.captioner_name,
            "scorer": model.scorer_name,
            "device": model.device,
            "queue_depth": worker.depth,
            "max_batch": settings.max_batch,
            "candidates": settings.candidates,
            "accepts_prompt": model.accepts_prompt,
            "auth": settings.api_key is not None,
            "allow_urls": fetcher is not None,
        }

    @app.post("/v1/caption", response_model=CaptionResponse, openapi_extra=_MULTIPART_OR_JSON)
    async def caption(request: Request) -> dict:
        """Caption images sent as multipart `file` fields (repeatable) or as JSON `images`."""
        started = time.monotonic()
        if _is_multipart(request):
            async with _multipart_form(request, settings.max_images) as form:
                fields = {key: value for key, value in form.multi_items() if key != "file" and value != ""}
                options = _parse(CaptionOptions, fields)
                kwargs = caption_kwargs(options)
                images = await form_images(form)
        else:
            body = _parse(CaptionJson, await _json_body(request))
            kwargs = caption_kwargs(CaptionOptions.model_validate(body.model_dump(exclude={"images"})))
            images = await reader.from_strings(body.images, "images")
        decoded = time.monotonic()
        results, timings = await run("caption", images, kwargs)
        total_ms = (time.monotonic() - started) * 1000
        return {
            "results": [result.to_json() for result in results],
            "captioner": model.captioner_name,
            "scorer": model.scorer_name,
            "timings": {
                "decode_ms": round((decoded - started) * 1000, 2),
                **timings.to_json(),
                "total_ms": round(total_ms, 2),
            },
        }

    def require_scorer() -> None:
        if model.scorer is None:
            raise ApiError(400, "this server has no scorer (it was started with --scorer none): embeddings are off")

    def embeddings(vectors: list) -> dict:
        return {
            "embeddings": [[round(float(x), 6) for x in vector] for vector in vectors],
            "dim": len(vectors[0]) if vectors else 0,
            "scorer": model.scorer_name,
        }

    @app.post("/v1/embed/image", response_model=EmbedResponse)
    async def embed_image(request: Request) -> dict:
        """L2-normalised image embeddings from the scorer: multipart `file` fields or JSON `images`."""
        require_scorer()
        if _is_multipart(request):
            async with _multipart_form(request, settings.max_images) as form:
                images = await form_images(form)
        else:
            body = _parse(EmbedImageJson, await _json_body(request))
            images = await reader.from_strings(body.images, "images")
        vectors, _ = await run("embed_images", images)
        return embeddings(vectors)

    @app.post("/v1/embed/text", response_model=EmbedResponse)
    async def embed_text(body: EmbedTextJson) -> dict:
        """L2-normalised text embeddings from the scorer."""
        require_scorer()
        vectors, _ = await run("embed_texts", body.texts)
        return embeddings(vectors)

    @app.get("/v1/models")
    async def models() -> dict:
        """The OpenAI model list: the one captioner this server runs."""
        entry = {"id": model.captioner_name, "object": "model", "created": 0, "owned_by": "capfleet"}
        return {"object": "list", "data": [entry]}

    @app.post("/v1/chat/completions")
    async def chat_completions(body: chat.ChatRequest) -> dict:
        """OpenAI chat completions (subset): one image plus text in, the ranked captions as choices."""
        if model.captioner is None:
            raise ApiError(400, "this server has no captioner (it was started with --captioner none)")
        url, text = chat.split_request(body)
        images = await reader.from_strings([url], "image_url")
        options = chat.caption_options(body, model, text, settings.candidates)
        results, _ = await run("caption", images, options)
        result: CaptionResult = results[0]
        return chat.completion(result, body, model, text, options["max_new_tokens"])

    return app
