"""Captions from any OpenAI-compatible chat-completions endpoint (vLLM, SGLang, llama.cpp, Ollama,
TGI, hosted APIs, `capfleet serve`).

Each image is one request (a base64 data URL, shrunk to the model's input size first), asking
for `n` choices; a server that returns fewer is asked again for the rest. `concurrency` requests
are in flight; 429, 5xx, timeouts and dropped connections are retried with exponential backoff
(honouring Retry-After, in seconds or as a date); a request that still fails becomes that image's error record. Only the
standard library is used, so the engine needs no extra package. The API key is read from an
environment variable and goes only into the Authorization header: never into logs, errors or run.json.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import logging
import os
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timezone
from email.utils import parsedate_to_datetime

from capfleet.models.engines.base import PartialBatchError, distinct_texts, per_image_seeds
from capfleet.options import option

NAME = "openai"
EXTRA = None  # the standard library is enough
REQUIRES: tuple[str, ...] = ()
RESOLVES_NAMES = False  # --captioner is the server's model name, not one loaded here
_PANEL = "Engine: openai"

log = logging.getLogger("capfleet")


@dataclass
class Options:
    api_base: str | None = option(None, "openai: endpoint base URL, e.g. http://127.0.0.1:8000/v1.", panel=_PANEL)
    api_key_env: str = option("OPENAI_API_KEY", "openai: environment variable holding the API key.", panel=_PANEL)
    concurrency: int = option(8, "openai: requests in flight (also raise --batch-size to match).", panel=_PANEL)
    request_timeout: float = option(60.0, "openai: seconds per request.", panel=_PANEL)
    retries: int = option(4, "openai: retries after 429, 5xx, timeouts (exponential backoff).", panel=_PANEL)
    image_size: int = option(0, "openai: shorter side images are sent at (0: the model's own if known).", panel=_PANEL)


def check(config) -> list[str]:
    api_base = config.api_base or ""
    host = api_base.split("://", 1)[-1].split("/", 1)[0]
    checks = [
        (config.engine != NAME or bool(api_base), "--engine openai needs --api-base URL"),
        (not api_base or api_base.startswith(("http://", "https://")), "--api-base must be http(s)://"),
        ("@" not in host, "--api-base must not hold credentials: put the key in the variable --api-key-env names"),
        (config.concurrency >= 1, "--concurrency must be >= 1"),
        (config.request_timeout > 0, "--request-timeout must be > 0"),
        (config.retries >= 0, "--retries must be >= 0"),
        (config.image_size >= 0, "--image-size must be >= 0"),
    ]
    return [message for ok, message in checks if not ok]


def gpus_per_worker(config) -> int:
    """The model runs behind the endpoint; `--gpus N` still gives each worker one GPU, as for transformers."""
    return 1


def load(config) -> OpenAICaptioner:
    from capfleet.decoding import DecodingOptions

    return OpenAICaptioner.from_config(config, DecodingOptions.of_run(config))


DEFAULT_IMAGE_SIZE = 448  # when the model's own input size is unknown (Qwen2-VL, InternVL tiles)
MAX_BACKOFF_S = 30.0


class RequestFailed(RuntimeError):
    """A request that failed for good (after its retries, or an error retrying cannot fix)."""


def encode_image(image, size: int) -> str:
    """A JPEG data URL of `image` whose shorter side is at most `size` (the model sees no more)."""
    image = image.convert("RGB")
    shorter = min(image.size)
    if shorter > size:
        scale = size / shorter
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), 3)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def chat_request(model: str, image_url: str, prompt: str, n: int, options, seed: int | None) -> dict:
    """The chat-completions body for one image: one user message with the image and the prompt."""
    content = [{"type": "image_url", "image_url": {"url": image_url}}, {"type": "text", "text": prompt}]
    body = {"model": model, "messages": [{"role": "user", "content": content}], "n": n}
    body["max_tokens"] = options.max_new_tokens
    if options.decoding == "beam":
        body["temperature"] = 0.0  # the most likely answer, as close to beam search as the API goes
    else:
        body.update(temperature=options.temperature, top_p=options.top_p)
    if seed is not None:
        body["seed"] = seed
    return body


def choice_texts(response: dict) -> list[str]:
    """The answer of every choice; `content` may be a string or a list of text parts."""
    choices = response.get("choices") if isinstance(response, dict) else None
    if not isinstance(choices, list):
        raise RequestFailed(f"unexpected response (no choices): {json.dumps(response)[:200]}")
    texts = []
    for choice in choices:
        content = (choice.get("message") or {}).get("content") if isinstance(choice, dict) else None
        if isinstance(content, list):
            content = " ".join(part.get("text", "") for part in content if isinstance(part, dict))
        texts.append(content if isinstance(content, str) else "")
    return texts


def _retry_after(headers, now: float) -> float | None:
    """Seconds the server asked us to wait (0: now), from either form RFC 9110 allows: seconds, or
    an HTTP date (less `now`, a time.time() value); None when absent or unreadable."""
    value = headers.get("Retry-After") if headers else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # "-0000": UTC without saying where from
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, when.timestamp() - now)


def _detail(body: bytes) -> str:
    text = body.decode("utf-8", errors="replace").strip()
    try:
        error = json.loads(text).get("error", text)
        text = error.get("message", str(error)) if isinstance(error, dict) else str(error)
    except (ValueError, AttributeError):
        pass
    return " ".join(text.split())[:200]


class OpenAICaptioner:
    """The Captioner interface over HTTP: `generate(images, n, prompt(s), seeds, options)`."""

    accepts_prompt = True
    per_image_prompts = True  # every image is its own request anyway
    family = "chat"

    def __init__(
        self,
        model: str,
        api_base: str,
        options,
        api_key: str | None = None,
        concurrency: int = 8,
        timeout: float = 60.0,
        retries: int = 4,
        image_size: int = DEFAULT_IMAGE_SIZE,
        backoff: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ):
        """`sleep` waits between attempts and `clock` is the wall clock a Retry-After date is read
        against: tests hand in a recorder and a fixed time to assert the waits, not time them."""
        self.name = model
        self.url = api_base.rstrip("/") + "/chat/completions"
        self.options = options
        self._headers = {"Content-Type": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self.timeout = timeout
        self.retries = retries
        self.image_size = image_size
        self.backoff = backoff
        self.sleep = sleep
        self.clock = clock
        self.pool = ThreadPoolExecutor(concurrency, thread_name_prefix="capfleet-openai")

    def input_size(self) -> int:
        return self.image_size

    def encode(self, images: list) -> None:
        """None: the engine encodes the images itself, and no scorer shares its model."""
        return None

    def generate(
        self, images: list, num_candidates: int, prompt=None, seeds=None, options=None, encoding=None
    ) -> list[list[str]]:
        """Up to `num_candidates` distinct captions per image. Images whose request failed for good
        are reported together in a PartialBatchError after the others are done."""
        from capfleet.models.captioner import DEFAULT_CHAT_PROMPT

        prompts = prompt if isinstance(prompt, list) else [prompt] * len(images)
        image_seeds = per_image_seeds(seeds, len(images))
        futures = [
            self.pool.submit(self._caption, image, text or DEFAULT_CHAT_PROMPT, num_candidates, seed, options)
            for image, text, seed in zip(images, prompts, image_seeds, strict=True)
        ]
        candidates: list[list[str] | None] = []
        errors: dict[int, str] = {}
        for index, future in enumerate(futures):
            try:
                candidates.append(future.result())
            except RequestFailed as exc:
                candidates.append(None)
                errors[index] = str(exc)
        if errors:
            raise PartialBatchError(candidates, errors)
        return candidates

    def _caption(self, image, prompt: str, n: int, seed: int | None, options) -> list[str]:
        """Ask for n choices; a server that returns fewer (or ignores n) is asked again, at most n times."""
        image_url = encode_image(image, self.image_size)
        texts: list[str] = []
        for round_index in range(n):
            missing = n - len(texts)
            round_seed = None if seed is None else seed + round_index
            request = chat_request(self.name, image_url, prompt, missing, options or self.options, round_seed)
            answers = choice_texts(self._post(request))
            texts += answers[:missing]
            if len(texts) >= n or not answers:
                break
        return distinct_texts(texts, n)

    def _post(self, body: dict) -> dict:
        """POST with retries on 429, 5xx, timeouts and connection errors; other errors fail at once."""
        data = json.dumps(body).encode()
        problem, wait = "no attempt", 0.0
        for attempt in range(self.retries + 1):
            if attempt:
                self.sleep(wait)
            wait = min(MAX_BACKOFF_S, self.backoff * 2**attempt * (1 + random.random() / 4))
            request = urllib.request.Request(self.url, data=data, headers=self._headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    payload = response.read()
            except urllib.error.HTTPError as exc:
                problem = f"HTTP {exc.code} from {self.url}: {_detail(exc.read())}"
                if exc.code != 429 and exc.code < 500:
                    raise RequestFailed(problem) from None
                asked = _retry_after(exc.headers, self.clock())  # 0 means "now", not "absent"
                wait = min(MAX_BACKOFF_S, wait if asked is None else asked)
                continue
            except (TimeoutError, urllib.error.URLError, http.client.HTTPException, ConnectionError) as exc:
                reason = getattr(exc, "reason", exc)
                problem = f"request to {self.url} failed: {type(reason).__name__}: {reason}"
                continue
            try:
                return json.loads(payload)
            except ValueError:
                raise RequestFailed(f"response from {self.url} is not JSON: {payload[:120]!r}") from None
        raise RequestFailed(f"{problem} (gave up after {self.retries + 1} attempts)")

    @classmethod
    def from_config(cls, config, options) -> OpenAICaptioner:
        api_key = os.environ.get(config.api_key_env) or None
        if api_key is None:
            log.info("$%s is not set: requests go without an API key", config.api_key_env)
        return cls(
            config.captioner,
            config.api_base,
            options,
            api_key=api_key,
            concurrency=config.concurrency,
            timeout=config.request_timeout,
            retries=config.retries,
            image_size=config.image_size or local_input_size(config.captioner) or DEFAULT_IMAGE_SIZE,
        )


def local_input_size(name: str) -> int | None:
    """The input size of a model whose files are here (builtin, a local folder); None otherwise."""
    from capfleet.models.registry import BUILTIN, CAPTIONER_ALIASES, resolve_name

    if name != BUILTIN and not os.path.isdir(os.path.expanduser(name)):
        return None
    path = os.path.join(resolve_name(name, CAPTIONER_ALIASES, "captioner"), "preprocessor_config.json")
    try:
        with open(path, encoding="utf-8") as handle:
            size = json.load(handle).get("size")
    except (OSError, ValueError):
        return None
    if isinstance(size, dict):
        size = size.get("shortest_edge") or size.get("height") or size.get("longest_edge")
    return int(size) if isinstance(size, (int, float)) else None
