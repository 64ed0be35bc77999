"""`capfleet serve`: the production API over HTTP, with dynamic batching, an OpenAI-compatible
endpoint and a web page. Needs the `serve` extra (FastAPI, uvicorn, python-multipart)."""

from capfleet.serve.app import create_app
from capfleet.serve.settings import ServeSettings

__all__ = ["ServeSettings", "create_app"]
