"""Every limit and switch of the service in one place, with the defaults `capfleet serve` uses."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ServeSettings:
    max_batch: int = 8  # images gathered into one model call
    max_wait_ms: float = 10.0  # how long the first request of a batch waits for company
    max_queue: int = 256  # images waiting for the model; beyond it requests get 503
    max_upload_mb: float = 20.0  # a request body larger than this gets 413
    max_images: int = 16  # images per request
    request_timeout_s: float = 60.0  # waiting for the model longer than this gets 504
    candidates: int = 5  # default candidates per image (the chat endpoint ranks this many)
    allow_urls: bool = False  # fetch http(s) image URLs given by clients
    allow_private_urls: bool = False  # also from loopback/private addresses: only inside a trusted network
    url_timeout_s: float = 10.0
    api_key: str | None = None  # bearer token required on /v1/* when set
    cors_origins: list[str] = field(default_factory=list)  # CORS stays off when empty

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    def validate(self) -> ServeSettings:
        checks = [
            (self.max_batch >= 1, "--max-batch must be >= 1"),
            (self.max_wait_ms >= 0, "--max-wait-ms must be >= 0"),
            (self.max_queue >= self.max_images, "--max-queue must be at least the images one request may send"),
            (self.max_upload_mb > 0, "--max-upload-mb must be > 0"),
            (self.request_timeout_s > 0, "--request-timeout must be > 0"),
            (self.candidates >= 1, "--candidates must be >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        return self
